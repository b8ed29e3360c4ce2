# DINO 4-scale, ConvNeXt-T (ImageNet-22K, fine-tuned on 1K at 384), 12
# epochs, COCO: 52.4 box AP in detrex (projects/dino model zoo;
# dino_convnext_tiny_384_4scale_12ep.py)
_base_ = '../_base_/dino_convnext_4scale.py'

# the ConvNeXt authors' IN-22K -> IN-1K 384 classifier (detrex's
# init_checkpoint convnext_tiny_22k_1k_384.pth)
checkpoint = 'checkpoints/convnext_tiny_22k_1k_384.pth'

model = dict(
    backbone=dict(
        arch='tiny', init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[192, 384, 768]))
