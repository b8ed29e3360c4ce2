# UperNet + DINOv3 ConvNeXt-B (LVD-1689M) on ADE20K, 512 crops, 160k: the
# paper's B recipe (upernet_convnext_b.py, docs/reference.md §5) with DINOv3
# weights (§8). Not trained here.
_base_ = '../upernet_convnext_b.py'

checkpoint = 'checkpoints/dinov3_convnext_base_pretrain_lvd1689m-801f2ba9.pth'

model = dict(
    backbone=dict(
        # 0.4, the value of both B rows (IN-1K and IN-22K) of the paper
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))

# stage_wise 0.9, N = 3 + ceil(27 / 3) = 12, as every paper row
optim_wrapper = dict(
    optimizer=dict(lr=1e-4),
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise',
                       num_layers=12))
