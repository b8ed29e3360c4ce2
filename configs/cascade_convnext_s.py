# Cascade Mask R-CNN, ConvNeXt-S (ImageNet-1K), 3x, COCO: 51.9 box / 45.0 mask
# AP in the paper. Official: cascade_mask_rcnn_convnext_small_patch4_window7_
# mstrain_480-800_giou_4conv1f_adamw_3x_coco_in1k.py; mmdet:
# cascade-mask-rcnn_convnext-s-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py
_base_ = './cascade_convnext_t.py'

checkpoint = 'checkpoints/convnext_small_1k_224.pth'

model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.6,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[96, 192, 384, 768]))

# N = 3 + ceil(27 / 3) = 12 layers for a stage 2 of 27 blocks
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(lr=2e-4),
    paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise',
                       num_layers=12))
