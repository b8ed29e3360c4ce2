# COCO instance segmentation with large-scale jitter at 1024x1024, as the
# ConvNeXt-V2 paper trains Mask R-CNN (docs/reference.md §7): resize towards
# 1024x1024 by a random ratio in 0.1..2.0 (aspect kept), crop a 1024x1024
# region (boxes recomputed from the masks, crops without a box allowed),
# drop degenerate boxes, flip 0.5. The leaf config pads every batch to
# 1024x1024 (BatchFixedSizePad in the model's data preprocessor; a `model`
# key here would clash with the model base). Test: one scale, 1333x800.
_base_ = 'mmdet::_base_/datasets/coco_instance.py'

image_size = (1024, 1024)
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=_base_.backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_type='absolute_range', crop_size=image_size,
         recompute_bbox=True, allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
# 32 images per iteration as in the V2 paper: 8 GPUs x 4
train_dataloader = dict(batch_size=4, dataset=dict(pipeline=train_pipeline))
