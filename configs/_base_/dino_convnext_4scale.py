# DINO 4-scale with a ConvNeXt backbone: detrex's DINO-ConvNeXt recipe
# (projects/dino/configs/dino-convnext/ and models/dino_convnext.py) as a
# diff over mmdet's R-50 DINO 4-scale 12-epoch config, which already has
# what detrex's DINO R-50 has: 900 queries, 100 denoising queries (label
# noise 0.5, box noise 1.0), 6 encoder + 6 decoder layers of width 256 and
# FFN 2048, focal / L1 / GIoU losses 1 / 5 / 2 with matching costs 2 / 5 / 2,
# the DETR augmentation (flip; resize 480-800 short side, or resize 400-600
# + crop 384-600 + resize), a 4-level ChannelMapper (1x1 convs + GN 32, an
# extra 3x3 stride-2 conv for the 4th level), AdamW lr 1e-4, weight decay
# 1e-4, backbone lr x0.1, gradient clipping at norm 0.1, 12 epochs with
# lr x0.1 from epoch 11, and auto_scale_lr at batch 16 (8 GPUs x 2 images;
# detrex's total_batch_size=16). detrex's 90000 iterations at batch 16 are
# 12.2 COCO epochs, its step at 82500 iterations epoch 11.2: mmdet's
# epoch-based 12 / [11] is the same schedule. Leaf configs set arch,
# checkpoint and neck channels.
_base_ = [
    'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
    './reliability.py',
    './convnext_dense.py',
]

model = dict(
    backbone=dict(
        _delete_=True,
        type='convnext_dense.ConvNeXt',
        arch='tiny',
        # strides 8, 16, 32; the ChannelMapper adds stride 64
        out_indices=(1, 2, 3),
        drop_path_rate=0.0,  # detrex: drop_path_rate=0.0 for every size
        # overwritten by the pretrained gamma; 1.0 as in detrex
        layer_scale_init_value=1.0),
    # detrex's ChannelMapper convs have biases (bias=True); mmdet's default
    # ('auto') drops them before a norm, and detrex's weights hold them
    neck=dict(in_channels=[192, 384, 768], bias=True),
    # detrex's PositionEmbeddingSine(temperature=10000, offset=-0.5) (mmdet's
    # DINO uses the DINO paper's 20 and 0.0): the values detrex's weights
    # were trained with
    positional_encoding=dict(temperature=10000, offset=-0.5))

# detrex: AdamW over detectron2's get_default_optimizer_params(
# weight_decay_norm=0.0, lr_factor_func=0.1 if 'backbone' in the name):
# - every backbone tensor at lr x0.1 and weight decay 1e-4: detrex's ConvNeXt
#   norms are its own LayerNorm class, not torch's, so detectron2 decays them
#   (the 'backbone' custom key likewise keeps mmengine's norm rule off the
#   backbone);
# - outside the backbone, torch LayerNorm / GroupNorm weights and biases
#   without weight decay (norm_decay_mult=0), every other tensor (biases and
#   embeddings included) with 1e-4.
# No layer-wise decay: detrex's DINO recipe has none.
optim_wrapper = dict(
    paramwise_cfg=dict(
        custom_keys={'backbone': dict(lr_mult=0.1)}, norm_decay_mult=0.0))

# this package's runtime (detection_runtime.py; mmdet's default_runtime comes
# with the DINO base): atomic checkpoints, quiet visualizer
default_hooks = dict(checkpoint=dict(type=_base_.atomic_checkpoint_hook))
visualizer = dict(type='convnext_dense.DetLocalVisualizer', _scope_='mmdet')
