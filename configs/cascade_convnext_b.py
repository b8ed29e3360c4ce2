# Cascade Mask R-CNN, ConvNeXt-B (ImageNet-1K), 3x, COCO: 52.7 box / 45.6 mask
# AP in the paper. Official: cascade_mask_rcnn_convnext_base_patch4_window7_
# mstrain_480-800_giou_4conv1f_adamw_3x_coco_in1k.py (no mmdet port)
_base_ = './cascade_convnext_t.py'

checkpoint = 'checkpoints/convnext_base_1k_224.pth'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.7,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[128, 256, 512, 1024]))

# N = 3 + ceil(27 / 3) = 12 layers for a stage 2 of 27 blocks
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(lr=2e-4),
    paramwise_cfg=dict(decay_rate=0.8, decay_type='layer_wise',
                       num_layers=12))
