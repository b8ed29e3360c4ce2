# DINO 4-scale, DINOv3 ConvNeXt-T (distilled on LVD-1689M, no ImageNet
# fine-tuning), 12 epochs, COCO: detrex's DINO-ConvNeXt-T recipe
# (dino_convnext_t_in22k_384_4scale_12e.py) with the DINOv3 weights
# (docs/reference.md §8). Not trained here: no published result.
# Assumed: the IN-22K recipe unchanged (backbone lr x0.1, drop path 0,
# no layer-wise decay); detrex has no DINOv3 row to take them from.
_base_ = './dino_convnext_t_in22k_384_4scale_12e.py'

# the DINOv3 authors' file; their Hugging Face (facebook/dinov3-convnext-tiny-
# pretrain-lvd1689m) and timm (convnext_tiny.dinov3_lvd1689m) files load too
checkpoint = 'checkpoints/dinov3_convnext_tiny_pretrain_lvd1689m-21b726bb.pth'

model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))
