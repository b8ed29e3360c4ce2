# Cascade Mask R-CNN, ConvNeXt-T (ImageNet-1K), 3x, COCO: 50.4 box / 43.7 mask
# AP in the paper. Official: cascade_mask_rcnn_convnext_tiny_patch4_window7_
# mstrain_480-800_giou_4conv1f_adamw_3x_coco_in1k.py; mmdet:
# cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py
_base_ = [
    './_base_/cascade_mask_rcnn_convnext_fpn.py',
    './_base_/coco_instance_ms_crop.py',
    './_base_/schedule_adamw_3x.py',
    './_base_/detection_runtime.py',
    './_base_/convnext_dense.py',
]

# official ImageNet-1K classification weights (final, non-EMA)
checkpoint = 'checkpoints/convnext_tiny_1k_224.pth'

model = dict(
    backbone=dict(
        arch='tiny',
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[96, 192, 384, 768]))

# N = 3 + ceil(9 / 3) = 6 layers for a stage 2 of 9 blocks
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(lr=2e-4),
    paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise', num_layers=6))
