# CPU demo: the ConvNeXt-T Cascade Mask R-CNN config, shrunk to train from
# scratch on the toy COCO set (convnext_dense.toy_data.toy_coco: 128x128
# images of rectangles, ellipses and triangles) in minutes on 2 CPU cores.
#
#   python tools/demo.py det        # writes data/toy_coco if absent
#   python tools/train.py configs/demo/cascade_convnext_demo.py
#
# Only what the CPU needs changes: a small ConvNeXt without pretrained
# weights, narrow FPN and heads, few proposals and RoIs, native image size,
# a short fp32 schedule. The structure (three GIoU 4conv1fc stages with
# IoU 0.5/0.6/0.7, FCN mask head, layer-wise decay) is the paper's.
_base_ = '../cascade_convnext_t.py'

data_root = 'data/toy_coco/'
# convnext_dense.toy_data.toy_coco.CLASSES
metainfo = dict(classes=('rectangle', 'ellipse', 'triangle'))
num_classes = 3
image_scale = (128, 128)
channels = 32  # FPN, RPN and RoI feature width (256 in the paper)
dims = (32, 64, 128, 256)
depths = (1, 1, 3, 1)

model = dict(
    backbone=dict(
        arch=dict(_delete_=True, depths=depths, dims=dims),
        drop_path_rate=0.,  # too short a schedule to need it
        init_cfg=None),  # from scratch
    neck=dict(in_channels=list(dims), out_channels=channels),
    rpn_head=dict(in_channels=channels, feat_channels=channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels),
        bbox_head=[
            dict(head, in_channels=channels, conv_out_channels=channels,
                 fc_out_channels=128, num_classes=num_classes)
            for head in _base_.model.roi_head.bbox_head
        ],
        mask_roi_extractor=dict(out_channels=channels),
        mask_head=dict(in_channels=channels, conv_out_channels=channels,
                       num_classes=num_classes)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=200),
        rcnn=[
            # 32 RoIs per image and stage (512 in the paper): the 4conv1fc
            # heads dominate the cost of an iteration
            dict(stage, sampler=dict(stage.sampler, num=32))
            for stage in _base_.model.train_cfg.rcnn
        ]),
    test_cfg=dict(rpn=dict(nms_pre=300, max_per_img=50)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    # the toy images are generated at their working size: no multi-scale
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                   'scale_factor')),
]
# decoding a 128x128 PNG is cheap: no worker processes competing for the
# two cores
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root, metainfo=metainfo, pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root, metainfo=metainfo, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator

# 6 epochs of 300 images at batch 4 = 450 iterations (about 1 s each on
# one busy core); lr x0.1 for the last epoch
max_epochs = 6
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    # a short warm-up for a short schedule: 100 iterations from 0.01 x lr
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
         end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[5], gamma=0.1),
]
# fp32: AMP needs a GPU. From scratch there is no pretrained backbone to
# protect, so no decay (rate 1); N = 3 + ceil(3 / 3) = 4 for this arch.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(lr=2e-3),
    paramwise_cfg=dict(decay_rate=1.0, num_layers=4))

# a log line every 25 of the 75 iterations an epoch: the whole demo stays
# under 60 terminal lines
default_hooks = dict(
    logger=dict(interval=25),
    checkpoint=dict(interval=max_epochs))
log_processor = dict(window_size=10)
randomness = dict(seed=0)
