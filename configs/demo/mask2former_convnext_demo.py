# CPU demo (`python tools/demo.py seg-m2f`): Mask2Former + ConvNeXt trained
# from scratch on the toy ADE20K set of convnext_dense.toy_data.toy_ade (5
# classes, 128x128 images). Everything else is
# mask2former/mask2former_convnext_t_ade20k_512.py; what changes is only what
# one CPU thread needs: a tiny backbone, a narrow and shallow head, few
# queries and points, small crops, a short schedule, no pretrained weights.
_base_ = ['../mask2former/mask2former_convnext_t_ade20k_512.py']

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
max_iters = 300  # 10 epochs of 240 images, batch 8
dims = 32  # 256 in the recipe; GN keeps its 32 groups
attn = dict(embed_dims=dims, num_heads=4)
ffn = dict(embed_dims=dims, feedforward_channels=4 * dims)

model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch='test',  # depths (1, 1, 1, 1), dims (16, 32, 64, 128)
        drop_path_rate=0.,  # one block per stage: nothing to regularise
        init_cfg=None),
    decode_head=dict(
        in_channels=[16, 32, 64, 128],
        feat_channels=dims,
        out_channels=dims,
        num_classes=num_classes,
        num_queries=16,  # 100 for 150 classes; 5 classes, few objects
        pixel_decoder=dict(
            encoder=dict(
                num_layers=1,  # 6 in the recipe
                layer_cfg=dict(self_attn_cfg=dict(attn, num_points=2),
                               ffn_cfg=ffn)),
            positional_encoding=dict(num_feats=dims // 2)),
        positional_encoding=dict(num_feats=dims // 2),
        transformer_decoder=dict(
            num_layers=3,  # one round over the 3 levels (9 in the recipe)
            layer_cfg=dict(self_attn_cfg=attn, cross_attn_cfg=attn,
                           ffn_cfg=ffn)),
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1]),
        # 32x32 mask logits at stride 4: 1024 points (12544 = 112 ** 2)
        train_cfg=dict(num_points=1024)))

optim_wrapper = dict(
    # from scratch learns faster than fine-tuning at 1e-4
    optimizer=dict(lr=1e-3),
    # N = 3 + ceil(1 / 3) for the test arch's single stage-2 block
    paramwise_cfg=dict(num_layers=4))

param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0, by_epoch=False, begin=0,
         end=max_iters),
]
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(interval=max_iters, save_best=None),
    # once drawing is on (the demo, tools/test.py --show-dir), paint every
    # image: mmseg's hook paints only every 50th by default
    visualization=dict(interval=1))
randomness = dict(seed=0)
env_cfg = dict(cudnn_benchmark=False)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomChoiceResize',
         scales=[int(128 * x * 0.1) for x in range(5, 21)],  # 64 .. 256
         resize_type='ResizeShortestEdge', max_size=512),
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
