# Mask2Former + ConvNeXt-T (ImageNet-1K) on COCO instance segmentation, LSJ
# 1024, 50 epochs x 16 images. No published Mask2Former-ConvNeXt number;
# mmdet's Swin-T: 47.7 box / 44.7 mask AP (mmdet
# metafile).
_base_ = ['../_base_/mask2former_convnext_coco_instance.py']

# non-EMA ImageNet-1K weights:
# https://dl.fbaipublicfiles.com/convnext/convnext_tiny_1k_224.pth
checkpoint = 'checkpoints/convnext_tiny_1k_224.pth'

model = dict(
    backbone=dict(
        arch='tiny',
        # Mask R-CNN-ConvNeXt-T's 0.4 (mmdet's Swin-T: 0.3) (assumed)
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    panoptic_head=dict(in_channels=[96, 192, 384, 768]))  # tiny dims

optim_wrapper = dict(
    # N = 3 + ceil(stage-2 depth / 3) = 3 + ceil(9 / 3)
    paramwise_cfg=dict(num_layers=6))
