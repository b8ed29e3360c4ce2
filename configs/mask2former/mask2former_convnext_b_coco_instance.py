# Mask2Former + ConvNeXt-B (ImageNet-1K) on COCO instance segmentation, LSJ
# 1024, 50 epochs x 16 images. No published Mask2Former-ConvNeXt number;
# mmdet ships no Swin-B instance config.
_base_ = ['../_base_/mask2former_convnext_coco_instance.py']

# non-EMA ImageNet-1K weights:
# https://dl.fbaipublicfiles.com/convnext/convnext_base_1k_224.pth
checkpoint = 'checkpoints/convnext_base_1k_224.pth'

model = dict(
    backbone=dict(
        arch='base',
        # Cascade-ConvNeXt-B's 0.7 (no Swin-B instance config) (assumed)
        drop_path_rate=0.7,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    panoptic_head=dict(in_channels=[128, 256, 512, 1024]))  # base dims

optim_wrapper = dict(
    # N = 3 + ceil(stage-2 depth / 3) = 3 + ceil(27 / 3)
    paramwise_cfg=dict(num_layers=12))
