# COCO instance segmentation (mmdet's dataset base: data/coco, batch 2 per
# GPU, test at 1333x800, CocoMetric for bbox and segm) with the ConvNeXt
# paper's training augmentation (from DETR): flip, then either (a) a random
# short side, or (b) a smaller resize and a random crop followed by (a).
_base_ = 'mmdet::_base_/datasets/coco_instance.py'

# policy (a): short side one of 480, 512, ..., 800 (step 32), long side <= 1333
multiscale_resize = dict(
    type='RandomChoiceResize',
    scales=[(1333, short) for short in range(480, 801, 32)],
    keep_ratio=True)

train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=_base_.backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [multiscale_resize],
            [
                # policy (b)
                dict(
                    type='RandomChoiceResize',
                    scales=[(1333, 400), (1333, 500), (1333, 600)],
                    keep_ratio=True),
                dict(
                    type='RandomCrop',
                    crop_type='absolute_range',
                    crop_size=(384, 600),
                    allow_negative_crop=True),
                multiscale_resize,
            ],
        ]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
