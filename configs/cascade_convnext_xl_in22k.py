# Cascade Mask R-CNN, ConvNeXt-XL (ImageNet-22K), 3x, COCO: 55.2 box / 47.7
# mask AP in the paper. Official: cascade_mask_rcnn_convnext_xlarge_patch4_
# window7_mstrain_480-800_giou_4conv1f_adamw_3x_coco_in22k.py (no mmdet port)
_base_ = './cascade_convnext_l_in22k.py'

# ImageNet-22K weights (not fine-tuned on 1K)
checkpoint = 'checkpoints/convnext_xlarge_22k_224.pth'

model = dict(
    backbone=dict(
        arch='xlarge',
        drop_path_rate=0.8,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[256, 512, 1024, 2048]))

# fp32 like L; same lr 1e-4 and decay 0.7
