# Mask2Former-ConvNeXt on ADE20K at 640x640 crops: the 512 base with the data
# of mmseg's 640 Mask2Former configs (mask2former_swin-b-in1k-384x384-pre_
# 8xb2-160k_ade20k-640x640.py): short side 640 x 0.5..2.0 (long side <=
# 2560), RandomCrop 640; test (2560, 640) keep ratio; no test-time padding
# to a multiple of 32 (the 512 config pads, the 640 one does not).
_base_ = ['./mask2former_convnext_ade20k_512.py']

crop_size = (640, 640)
model = dict(
    data_preprocessor=dict(
        _delete_=True,  # the 512 base's test_cfg (size_divisor 32) goes
        type='SegDataPreProcessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        bgr_to_rgb=True,
        pad_val=0,
        seg_pad_val=255,
        size=crop_size))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(
        type='RandomChoiceResize',
        scales=[int(640 * x * 0.1) for x in range(5, 21)],  # 320 .. 1280
        resize_type='ResizeShortestEdge',
        max_size=2560),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2560, 640), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
