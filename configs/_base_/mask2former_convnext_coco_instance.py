# Mask2Former on a ConvNeXt backbone, COCO instance segmentation, as a diff
# over mmdet's own R-50 config (mmdet 3.3.0, configs/mask2former/
# mask2former_r50_8xb2-lsj-50e_coco.py), whose recipe its Swin configs share:
# - head: as mmseg's semantic one (100 queries, 256-d, 6-layer MSDeformAttn
#   pixel decoder, 9 decoder layers, cls/mask/dice 2/5/5, 12544 points),
#   80 thing classes + "no object" (0.1); test: top 100 instances;
# - data: large-scale jitter, flip 0.5 then resize 1024x1024 x 0.1..2.0
#   (aspect kept) and crop 1024x1024, every batch padded to 1024x1024;
#   test 1333x800;
# - AdamW lr 1e-4, weight decay 0.05, eps 1e-8; grad-norm clip 0.01;
#   368750 iterations x 16 images (50 epochs of 118k images), lr x0.1 at
#   327778 and 355092; validation and checkpoints every 5k iterations.
# What this file changes: the backbone, the checkpoint hook (reliability.py)
# and the optimizer constructor. Leaf configs set arch, drop path,
# checkpoint and the head's in_channels.
_base_ = [
    'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py',
    './convnext_dense.py',
    './reliability.py',  # atomic checkpoints, NaN stop, exact resume
]

model = dict(
    backbone=dict(
        _delete_=True,  # replaces ResNet-50, no key of it carries over
        type='convnext_dense.ConvNeXt',
        arch='tiny',
        out_indices=(0, 1, 2, 3),  # strides 4/8/16/32: mask features + 3
        drop_path_rate=0.4,
        # overwritten by the pretrained gamma; 1.0 as in the released configs
        layer_scale_init_value=1.0),
    panoptic_head=dict(in_channels=[96, 192, 384, 768]))

# mmdet's Swin recipe (backbone lr x0.1; no weight decay on norms and the
# query/level embeddings) with ConvNeXt's layer-wise decay 0.95 in the
# backbone, as Mask R-CNN-ConvNeXt-T on COCO: lr = 1e-4 x 0.1 x
# 0.95 ** (N + 1 - layer id) (assumed: no published Mask2Former-ConvNeXt
# recipe). Weight decay 0 for norms, layer scale and every bias (this
# toolkit's rule; mmdet decays biases outside norms), x0 for the embeddings.
embed_multi = dict(lr_mult=1.0, decay_mult=0.0)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',  # fp32, as mmdet's Mask2Former configs
    constructor='convnext_dense.LayerDecayOptimizerConstructor',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), eps=1e-8,
        weight_decay=0.05),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    paramwise_cfg=dict(
        decay_rate=0.95, decay_type='layer_wise', num_layers=6,
        custom_keys={
            'backbone': dict(lr_mult=0.1, decay_mult=1.0),
            'query_embed': embed_multi,
            'query_feat': embed_multi,
            'level_embed': embed_multi,
        }))

default_hooks = dict(
    checkpoint=dict(type=_base_.atomic_checkpoint_hook))  # reliability.py
# mmdet's visualizer without its spurious out-of-bounds warnings for boxes
# that touch the image border (convnext_dense/engine/quiet.py)
visualizer = dict(type='convnext_dense.DetLocalVisualizer', _scope_='mmdet')
