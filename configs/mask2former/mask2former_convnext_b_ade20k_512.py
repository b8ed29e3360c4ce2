# Mask2Former + ConvNeXt-B (ImageNet-1K) on ADE20K, 512x512 crops, 160k
# iterations x 16 images. No published Mask2Former-ConvNeXt number for this
# row; the recipe is mmseg's 512 Mask2Former-Swin-S with B widths (mmseg
# ships Swin-B at 640 only).
_base_ = ['../_base_/mask2former_convnext_ade20k_512.py']

# non-EMA ImageNet-1K weights:
# https://dl.fbaipublicfiles.com/convnext/convnext_base_1k_224.pth
checkpoint = 'checkpoints/convnext_base_1k_224.pth'

model = dict(
    backbone=dict(
        arch='base',
        # UperNet-ConvNeXt-B's 0.4 (mmseg's Swin-B: 0.3) (assumed)
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]))  # base dims

optim_wrapper = dict(
    # N = 3 + ceil(stage-2 depth / 3) = 3 + ceil(27 / 3)
    paramwise_cfg=dict(num_layers=12))
