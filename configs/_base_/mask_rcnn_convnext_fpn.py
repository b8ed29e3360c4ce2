# Mask R-CNN with a ConvNeXt-T backbone, as a diff over mmdet's R-50 Mask
# R-CNN: Shared2FC box head with L1 loss, 4-conv FCN mask head, RPN with 1000
# training / 1000 test proposals, score 0.05, NMS 0.5, 100 detections, mask
# threshold 0.5. Leaf configs set arch, drop path, checkpoint and neck
# channels.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'

model = dict(
    backbone=dict(
        _delete_=True,
        type='convnext_dense.ConvNeXt',
        arch='tiny',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.4,
        # overwritten by the pretrained gamma; 1.0 as in the official configs
        layer_scale_init_value=1.0),
    neck=dict(in_channels=[96, 192, 384, 768]))
