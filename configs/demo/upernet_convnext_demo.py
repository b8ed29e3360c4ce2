# CPU demo (`python tools/demo.py seg`): UperNet + ConvNeXt trained from
# scratch on the toy ADE20K set of convnext_dense.toy_data.toy_ade (5 classes,
# 128x128 images). Everything else is upernet_convnext_t.py; what changes is
# only what a 2-core CPU needs: a tiny backbone, narrow heads, small crops, a
# short schedule, fp32, no pretrained weights.
_base_ = ['../upernet_convnext_t.py']

checkpoint = None  # from scratch: no ImageNet weights on this machine
data_root = 'data/toy_ade'
# toy_ade.CLASSES / PALETTE: annotation value c is classes[c - 1],
# value 0 ("other") is ignored, as in ADE20K
classes = ('ground', 'disc', 'box', 'triangle', 'ring')
palette = [[140, 110, 70], [220, 40, 40], [40, 180, 60], [50, 80, 220],
           [240, 200, 30]]
num_classes = len(classes)

crop_size = (128, 128)  # the toy images' size
test_scale = (512, 128)  # ADE20K's (2048, 512) scaled by 128 / 512
max_iters = 800
warmup_iters = 50

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch='test',  # depths (1, 1, 1, 1), dims (16, 32, 64, 128)
        drop_path_rate=0.,  # one block per stage: nothing to regularise
        init_cfg=None),
    # heads 16x narrower than 512/256: a third of the time of 64/32 and
    # enough for five classes
    decode_head=dict(
        in_channels=[16, 32, 64, 128], channels=32, num_classes=num_classes),
    auxiliary_head=dict(
        in_channels=64, channels=16, num_classes=num_classes),
    # stride floor(2/3 x 128); one window at 1x, several in the TTA's 1.75x
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(85, 85)))

optim_wrapper = dict(
    type='OptimWrapper',  # fp32: no AMP on the CPU
    # from scratch learns faster than fine-tuning at 1e-4
    optimizer=dict(lr=2e-3),
    # N = 3 + ceil(1 / 3) for the test arch's single stage-2 block
    paramwise_cfg=dict(num_layers=4))

param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False,
         begin=warmup_iters, end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=max_iters),
    # once drawing is on (the demo, tools/test.py --show-dir), paint every
    # image: mmseg's hook paints only every 50th by default
    visualization=dict(interval=1))
randomness = dict(seed=0)
env_cfg = dict(cudnn_benchmark=False)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=test_scale, ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=test_scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
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

# ADE20KDataset insists on ADE20K's 150 class names; the toy classes load
# through its parent with the same file layout and suffixes
toy_dataset = dict(
    type='BaseSegDataset',
    data_root=data_root,
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=True,
    metainfo=dict(classes=classes, palette=palette))
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(toy_dataset, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    dataset=dict(toy_dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader
