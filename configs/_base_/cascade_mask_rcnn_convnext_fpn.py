# Cascade Mask R-CNN with a ConvNeXt-T backbone and the "4conv1fc" GIoU box
# heads of the ConvNeXt paper, as a diff over mmdet's R-50 Cascade Mask R-CNN
# (which already has the 3 stages, stage loss weights 1/0.5/0.25, RPN with
# 2000 training proposals, the 4-conv FCN mask head with RoIAlign 14 and
# 28x28 targets, and the test settings: score 0.05, NMS 0.5, 100
# detections, mask threshold 0.5). Leaf configs set arch, drop path,
# checkpoint and neck channels.
_base_ = 'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py'

# (box regression target stds, IoU threshold) of the three stages: each stage
# refines the previous stage's boxes, so it regresses smaller deltas and asks
# more overlap of a positive
cascade_stages = [
    ([0.1, 0.1, 0.2, 0.2], 0.5),
    ([0.05, 0.05, 0.1, 0.1], 0.6),
    ([0.033, 0.033, 0.067, 0.067], 0.7),
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='convnext_dense.ConvNeXt',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        # overwritten by the pretrained gamma; 1.0 as in the official configs
        layer_scale_init_value=1.0),
    neck=dict(in_channels=[96, 192, 384, 768]),
    roi_head=dict(bbox_head=[
        dict(
            type='ConvFCBBoxHead',  # "4conv1fc": 4 shared 3x3 convs + 1 fc
            num_shared_convs=4,
            num_shared_fcs=1,
            in_channels=256,
            conv_out_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=80,
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder',
                target_means=[0., 0., 0., 0.],
                target_stds=stds),
            # class-specific boxes, decoded before the GIoU loss
            reg_class_agnostic=False,
            reg_decoded_bbox=True,
            norm_cfg=dict(type='SyncBN', requires_grad=True),
            loss_cls=dict(
                type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
        for stds, _ in cascade_stages
    ]),
    train_cfg=dict(rcnn=[
        dict(
            assigner=dict(
                type='MaxIoUAssigner',
                pos_iou_thr=iou,
                neg_iou_thr=iou,
                min_pos_iou=iou,
                match_low_quality=False,
                ignore_iof_thr=-1),
            sampler=dict(
                type='RandomSampler',
                num=512,
                pos_fraction=0.25,
                neg_pos_ub=-1,
                add_gt_as_proposals=True),
            mask_size=28,
            pos_weight=-1,
            debug=False) for _, iou in cascade_stages
    ]))
