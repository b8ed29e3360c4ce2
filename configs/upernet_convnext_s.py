# UperNet + ConvNeXt-S (ImageNet-1K pretrained) on ADE20K, 512x512 crops,
# 160k iterations x 16 images. Paper (docs/reference.md §5): 48.7 mIoU
# single-scale, 49.6 multi-scale + flip.
_base_ = ['./_base_/upernet_convnext_ade20k_512.py']

# non-EMA ImageNet-1K weights:
# https://dl.fbaipublicfiles.com/convnext/convnext_small_1k_224.pth
checkpoint = 'checkpoints/convnext_small_1k_224.pth'

model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    decode_head=dict(in_channels=[96, 192, 384, 768]),  # small dims
    auxiliary_head=dict(in_channels=384))  # stage 2 (in_index=2)

optim_wrapper = dict(
    # N = 3 + ceil(stage-2 depth / 3) = 3 + ceil(27 / 3)
    paramwise_cfg=dict(num_layers=12))
