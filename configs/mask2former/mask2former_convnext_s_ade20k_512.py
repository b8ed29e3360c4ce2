# Mask2Former + ConvNeXt-S (ImageNet-1K) on ADE20K, 512x512 crops, 160k
# iterations x 16 images. No published Mask2Former-ConvNeXt number for this
# row; the recipe is mmseg's Mask2Former-Swin-S (51.24 mIoU there, mmseg
# metafile).
_base_ = ['../_base_/mask2former_convnext_ade20k_512.py']

# non-EMA ImageNet-1K weights:
# https://dl.fbaipublicfiles.com/convnext/convnext_small_1k_224.pth
checkpoint = 'checkpoints/convnext_small_1k_224.pth'

model = dict(
    backbone=dict(
        arch='small',
        # UperNet-ConvNeXt-S's 0.3 (mmseg's Swin-S: 0.3) (assumed)
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    decode_head=dict(in_channels=[96, 192, 384, 768]))  # small dims

optim_wrapper = dict(
    # N = 3 + ceil(stage-2 depth / 3) = 3 + ceil(27 / 3)
    paramwise_cfg=dict(num_layers=12))
