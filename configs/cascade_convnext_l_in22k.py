# Cascade Mask R-CNN, ConvNeXt-L (ImageNet-22K), 3x, COCO: 54.8 box / 47.6
# mask AP in the paper. Official: cascade_mask_rcnn_convnext_large_patch4_
# window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco_in22k.py (no mmdet port)
_base_ = './cascade_convnext_t.py'

# ImageNet-22K weights (not fine-tuned on 1K)
checkpoint = 'checkpoints/convnext_large_22k_224.pth'

model = dict(
    backbone=dict(
        arch='large',
        drop_path_rate=0.7,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[192, 384, 768, 1536]))

# N = 3 + ceil(27 / 3) = 12 layers for a stage 2 of 27 blocks; L and XL
# were trained in fp32
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(lr=1e-4),
    paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise',
                       num_layers=12))
