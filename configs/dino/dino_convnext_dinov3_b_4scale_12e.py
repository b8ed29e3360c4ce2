# DINO 4-scale, DINOv3 ConvNeXt-B (LVD-1689M), 12 epochs, COCO: detrex's
# DINO-ConvNeXt-B recipe (dino_convnext_b_in22k_384_4scale_12e.py) with the
# DINOv3 weights (docs/reference.md §8). Not trained here. Assumed: the
# IN-22K recipe unchanged, as for dino_convnext_dinov3_t_4scale_12e.py.
_base_ = './dino_convnext_b_in22k_384_4scale_12e.py'

# the DINOv3 authors' file; facebook/dinov3-convnext-base-pretrain-lvd1689m
# (Hugging Face) and convnext_base.dinov3_lvd1689m (timm) load too
checkpoint = 'checkpoints/dinov3_convnext_base_pretrain_lvd1689m-801f2ba9.pth'

model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))
