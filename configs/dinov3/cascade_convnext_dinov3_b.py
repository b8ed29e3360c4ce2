# Cascade Mask R-CNN, DINOv3 ConvNeXt-B (LVD-1689M), 3x, COCO: the paper's
# B recipe for large-data pre-training (cascade_convnext_b_in22k.py,
# docs/reference.md §4) with DINOv3 weights (§8). Not trained here.
_base_ = '../cascade_convnext_b.py'

# the DINOv3 authors' file; facebook/dinov3-convnext-base-pretrain-lvd1689m
# (Hugging Face) and convnext_base.dinov3_lvd1689m (timm) load too
checkpoint = 'checkpoints/dinov3_convnext_base_pretrain_lvd1689m-801f2ba9.pth'

model = dict(
    backbone=dict(
        # 0.6, the IN-22K B row rather than IN-1K's 0.7: weights from a far
        # larger data set need less regularisation to fine-tune
        drop_path_rate=0.6,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))

# lr 1e-4 and layer_wise 0.8 as the IN-22K B row; N = 3 + ceil(27 / 3) = 12:
# stem x0.8^13 = 0.055, stage 3 x0.8
optim_wrapper = dict(
    optimizer=dict(lr=1e-4),
    paramwise_cfg=dict(decay_rate=0.8, decay_type='layer_wise',
                       num_layers=12))
