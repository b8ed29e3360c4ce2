# Mask2Former + ConvNeXt-S (ImageNet-1K) on COCO instance segmentation, LSJ
# 1024, 50 epochs x 16 images. No published Mask2Former-ConvNeXt number;
# mmdet's Swin-S: 49.3 box / 46.1 mask AP (mmdet
# metafile).
_base_ = ['../_base_/mask2former_convnext_coco_instance.py']

# non-EMA ImageNet-1K weights:
# https://dl.fbaipublicfiles.com/convnext/convnext_small_1k_224.pth
checkpoint = 'checkpoints/convnext_small_1k_224.pth'

model = dict(
    backbone=dict(
        arch='small',
        # Cascade-ConvNeXt-S's 0.6 (mmdet's Swin-S: 0.3) (assumed)
        drop_path_rate=0.6,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    panoptic_head=dict(in_channels=[96, 192, 384, 768]))  # small dims

optim_wrapper = dict(
    # N = 3 + ceil(stage-2 depth / 3) = 3 + ceil(27 / 3)
    paramwise_cfg=dict(num_layers=12))
