# UperNet + DINOv3 ConvNeXt-T (LVD-1689M) on ADE20K, 512 crops, 160k: the
# paper's T recipe (upernet_convnext_t.py, docs/reference.md §5) with DINOv3
# weights (§8). Not trained here.
_base_ = '../upernet_convnext_t.py'

checkpoint = 'checkpoints/dinov3_convnext_tiny_pretrain_lvd1689m-21b726bb.pth'

model = dict(
    backbone=dict(
        # 0.4 as the paper's T (the segmentation rows use 0.3-0.4 whatever
        # the pre-training)
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))

# stage_wise 0.9 as every paper row: downsamples x0.478, stage 0 x0.531 ..
# stage 3 x0.729; N = 3 + ceil(9 / 3) = 6
optim_wrapper = dict(
    optimizer=dict(lr=1e-4),
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))
