# Mask2Former on a ConvNeXt backbone, ADE20K semantic segmentation, 512x512
# crops, 160k iterations x 16 images, as a diff over mmseg's own R-50
# Mask2Former config (mmseg 1.2.2, configs/mask2former/), which holds the
# recipe its Swin configs share:
# - head: 100 queries, 256-d; MSDeformAttn pixel decoder (6 layers, 3 levels
#   of strides 8/16/32, 4 points, GN 32) + the stride-4 mask features; 9
#   masked-attention decoder layers; 150 classes + "no object" (class weight
#   0.1); losses cls 2.0, mask (sigmoid CE) 5.0, dice 5.0, each matched by
#   the Hungarian assigner with the same weights on 12544 sampled points
#   (oversample 3.0, importance 0.75);
# - data: short side resized to 512 x 0.5..2.0 (step 0.1, long side <= 2048),
#   RandomCrop 512 (cat_max_ratio 0.75), flip 0.5, photometric distortion;
#   test: (2048, 512) keep ratio, whole image (mode='whole');
# - AdamW lr 1e-4, weight decay 0.05, eps 1e-8; grad-norm clip 0.01; poly
#   (power 0.9, to 0) over 160k iterations without warm-up; validation and
#   checkpoints every 5k iterations (the best mIoU kept).
# What this file changes: the backbone (ConvNeXt, strides 4/8/16/32 as
# Swin's), custom_imports, the checkpoint hook (reliability.py) and the
# optimizer constructor (below). Leaf configs set arch, drop path, checkpoint
# and the head's in_channels.
_base_ = [
    'mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py',
    './reliability.py',  # atomic checkpoints, NaN stop, exact resume
]

# convnext_dense.py's custom_imports (a key the mmseg base sets too, so not
# a second base); mmseg's head builds mmdet's pixel decoder and assigner
custom_imports = dict(imports=['convnext_dense', 'mmdet.models'],
                      allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,  # replaces ResNet-50, no key of it carries over
        type='convnext_dense.ConvNeXt',
        arch='tiny',
        out_indices=(0, 1, 2, 3),  # strides 4/8/16/32: mask features + 3
        drop_path_rate=0.4,
        # overwritten by the pretrained gamma; 1.0 as in the released configs
        layer_scale_init_value=1.0),
    decode_head=dict(in_channels=[96, 192, 384, 768]))

# mmseg's Swin recipe trains the backbone at 0.1 x lr and keeps weight decay
# off norms and off the query/level embeddings. Here the backbone also gets
# ConvNeXt's stage-wise decay 0.9 (as every UperNet-ConvNeXt config):
# lr = 1e-4 x 0.1 x 0.9 ** (N + 1 - layer id), downsamples 0.478, stages
# 0.531 .. 0.729, the output norms 1 (assumed: no published Mask2Former-
# ConvNeXt recipe). Weight decay 0 for norms (mmseg: norm_decay_mult 0),
# layer scale, GRN and every bias (this toolkit's rule; mmseg decays biases
# outside norms), and x0 for the embeddings (mmseg's custom keys).
embed_multi = dict(lr_mult=1.0, decay_mult=0.0)
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',  # fp32, as mmseg's Mask2Former configs
    constructor='convnext_dense.LayerDecayOptimizerConstructor',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), eps=1e-8,
        weight_decay=0.05),
    clip_grad=dict(max_norm=0.01, norm_type=2),
    paramwise_cfg=dict(
        decay_rate=0.9, decay_type='stage_wise', num_layers=6,
        custom_keys={
            'backbone': dict(lr_mult=0.1, decay_mult=1.0),
            'query_embed': embed_multi,
            'query_feat': embed_multi,
            'level_embed': embed_multi,
        }))

default_hooks = dict(
    checkpoint=dict(type=_base_.atomic_checkpoint_hook))  # reliability.py
