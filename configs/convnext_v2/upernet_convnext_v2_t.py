# UperNet + ConvNeXt-V2-T (IN-1K fine-tuned) on ADE20K, 512 crops, 160k
# iterations x 16 images: the V2 paper's recipe (docs/reference.md §7).
# Not trained here.
_base_ = '../upernet_convnext_t.py'

checkpoint = 'checkpoints/convnextv2_tiny_1k_224_ema.pt'

model = dict(
    backbone=dict(
        arch='v2-tiny',  # GRN, no layer scale
        # searched over 0.1..0.4 in the paper; 0.3 for T (assumed)
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))

# lr 1e-4 of the paper's {1e-4, 2e-4, 3e-4}; decay 0.9 of its {0.8, 0.9},
# applied stage-wise as every V1 UperNet (assumed); N = 6 for 9 blocks
optim_wrapper = dict(
    optimizer=dict(lr=1e-4),
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))

# multi-scale test (--tta): the V2 paper's narrower ratios
img_ratios = [0.75, 0.875, 1.0, 1.125, 1.25]
test_scale = (2048, 512)
tta_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(type='Resize',
                     scale=(int(test_scale[0] * r), int(test_scale[1] * r)),
                     keep_ratio=True) for r in img_ratios
            ],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal')
            ],
            [dict(type='LoadAnnotations')],
            [dict(type='PackSegInputs')]
        ])
]
