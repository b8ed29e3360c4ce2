# Mask2Former + ConvNeXt-T (ImageNet-1K) on ADE20K, 512x512 crops, 160k
# iterations x 16 images. No published Mask2Former-ConvNeXt-T number; the
# recipe is mmseg's Mask2Former-Swin-T (48.66 mIoU there, mmseg
# metafile).
_base_ = ['../_base_/mask2former_convnext_ade20k_512.py']

# non-EMA ImageNet-1K weights:
# https://dl.fbaipublicfiles.com/convnext/convnext_tiny_1k_224.pth
checkpoint = 'checkpoints/convnext_tiny_1k_224.pth'

model = dict(
    backbone=dict(
        arch='tiny',
        # UperNet-ConvNeXt-T's 0.4 (mmseg's Swin-T: 0.3) (assumed)
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    decode_head=dict(in_channels=[96, 192, 384, 768]))  # tiny dims

optim_wrapper = dict(
    # N = 3 + ceil(stage-2 depth / 3) = 3 + ceil(9 / 3)
    paramwise_cfg=dict(num_layers=6))
