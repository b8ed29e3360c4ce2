# DINO 4-scale, ConvNeXt-L (ImageNet-22K, fine-tuned on 1K at 384), 12
# epochs, COCO: 55.5 box AP in detrex (projects/dino model zoo;
# dino_convnext_large_384_4scale_12ep.py)
_base_ = '../_base_/dino_convnext_4scale.py'

# the ConvNeXt authors' IN-22K -> IN-1K 384 classifier (detrex's
# init_checkpoint convnext_large_22k_1k_384.pth)
checkpoint = 'checkpoints/convnext_large_22k_1k_384.pth'

model = dict(
    backbone=dict(
        arch='large', init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[384, 768, 1536]))
