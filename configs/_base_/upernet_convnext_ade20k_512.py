# ADE20K at 512x512 crops for the UperNet-ConvNeXt configs
# (docs/reference.md §5).
# mmseg's dataset base holds the training pipeline as the paper runs it:
# resize to (2048, 512) x a ratio in 0.5..2.0 (keep aspect), RandomCrop to
# 512x512 with cat_max_ratio 0.75, flip 0.5, PhotoMetricDistortion; the
# preprocessor below pads each crop to 512x512 (image 0, label 255). Tests
# resize to (2048, 512) and score with IoUMetric (mIoU).
_base_ = ['./upernet_convnext.py', 'mmseg::_base_/datasets/ade20k.py']

crop_size = (512, 512)
test_scale = (2048, 512)  # the Resize of mmseg's test_pipeline
model = dict(
    data_preprocessor=dict(size=crop_size),
    # single-scale test: sliding windows of the crop size,
    # stride 341 = floor(2/3 x 512), so neighbours overlap by a third
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

train_dataloader = dict(batch_size=2)  # x 8 GPUs = 16 images per iteration

# Multi-scale + flip test (`tools/test.py --tta` wraps cfg.model in
# cfg.tta_model = SegTTAModel, which averages the softmax of every view, and
# runs cfg.tta_pipeline): the test scale x 0.5 .. 1.75, each plain and
# flipped, as mmseg 0.x's MultiScaleFlipAug did for the released numbers
# (mmseg 1.x's own ADE20K tta_pipeline scales the raw image instead).
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
            [dict(type='LoadAnnotations')],  # reduce_zero_label from dataset
            [dict(type='PackSegInputs')]
        ])
]
