# UperNet + ConvNeXt-B (ImageNet-22K pretrained) on ADE20K, 640x640 crops,
# 160k iterations x 16 images. Paper (docs/reference.md §5): 52.6 mIoU
# single-scale, 53.1 multi-scale + flip.
_base_ = ['./_base_/upernet_convnext_ade20k_640.py']

# ImageNet-22K weights (224 px):
# https://dl.fbaipublicfiles.com/convnext/convnext_base_22k_224.pth
checkpoint = 'checkpoints/convnext_base_22k_224.pth'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),  # base dims
    auxiliary_head=dict(in_channels=512))  # stage 2 (in_index=2)

optim_wrapper = dict(
    # N = 3 + ceil(stage-2 depth / 3) = 3 + ceil(27 / 3)
    paramwise_cfg=dict(num_layers=12))
