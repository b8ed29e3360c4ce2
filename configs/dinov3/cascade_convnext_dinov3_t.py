# Cascade Mask R-CNN, DINOv3 ConvNeXt-T (distilled on LVD-1689M, no ImageNet
# fine-tuning), 3x, COCO: the paper's ConvNeXt-T recipe (cascade_convnext_t.py,
# docs/reference.md §4) with DINOv3 weights (§8). Not trained here: no
# published result to reproduce.
_base_ = '../cascade_convnext_t.py'

# the DINOv3 authors' file; their Hugging Face (facebook/dinov3-convnext-tiny-
# pretrain-lvd1689m) and timm (convnext_tiny.dinov3_lvd1689m) files load too
checkpoint = 'checkpoints/dinov3_convnext_tiny_pretrain_lvd1689m-21b726bb.pth'

model = dict(
    backbone=dict(
        # 0.4, as for IN-1K T: the risk drop path guards against (a small
        # backbone overfitting COCO in 36 epochs) does not depend on where
        # the weights came from
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))

# layer_wise 0.7 (the paper's T value), N = 3 + ceil(9 / 3) = 6: stem x0.082,
# stage 3 x0.7. Strong decay keeps the early, general DINOv3 features close
# to their pretrained values; a weaker one (0.8-0.9) is the first thing to
# try if the distilled features fit COCO less well than ImageNet's
optim_wrapper = dict(
    optimizer=dict(lr=2e-4),
    paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise', num_layers=6))
