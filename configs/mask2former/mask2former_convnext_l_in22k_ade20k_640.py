# Mask2Former + ConvNeXt-L (ImageNet-22K) on ADE20K, 640x640 crops, 160k
# iterations x 16 images. No published Mask2Former-ConvNeXt number for this
# row; the recipe is mmseg's Mask2Former-Swin-L-22K at 640 (56.01 mIoU
# there, mmseg metafile).
_base_ = ['../_base_/mask2former_convnext_ade20k_640.py']

# ImageNet-22K weights (224 px):
# https://dl.fbaipublicfiles.com/convnext/convnext_large_22k_224.pth
checkpoint = 'checkpoints/convnext_large_22k_224.pth'

model = dict(
    backbone=dict(
        arch='large',
        # UperNet-ConvNeXt-L-22K's 0.4 (mmseg's Swin-L: 0.3) (assumed)
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    decode_head=dict(in_channels=[192, 384, 768, 1536]))  # large dims

optim_wrapper = dict(
    # N = 3 + ceil(stage-2 depth / 3) = 3 + ceil(27 / 3)
    paramwise_cfg=dict(num_layers=12))
