# UperNet on a ConvNeXt backbone, ADE20K, 160k iterations: what every
# segmentation config shares (docs/reference.md §5). The variants set the
# arch, drop path, checkpoint, head widths and num_layers; the crop-size bases
# (upernet_convnext_ade20k_{512,640}.py) add the data and the test mode.
#
# mmseg's UperNet base supplies the heads as the paper uses them: UPerHead
# with pool scales (1, 2, 3, 6), 512 channels, dropout 0.1; an FCN auxiliary
# head on stage 2 (in_index=2) with 256 channels and loss weight 0.4; SyncBN
# (reverted to BN by mmengine in a non-distributed run); and the ImageNet
# mean/std preprocessor padding segmentation maps with 255 (ignored).
# (mmseg's upernet_convnext.py base would clash: it sets custom_imports to
# mmpretrain, and its backbone carries mmpretrain-only arguments. Its
# schedule_160k.py base is not used either: it leaves an SGD `optimizer`
# variable behind that no `_delete_` can remove.)
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/default_runtime.py',
    './convnext_dense.py',
    './reliability.py',  # atomic checkpoints, NaN stop, exact resume
]

num_classes = 150  # ADE20K; label 0 ("other") is ignored via reduce_zero_label
model = dict(
    pretrained=None,  # the backbone's own init_cfg loads its weights
    backbone=dict(
        _delete_=True,  # replaces ResNet-50, no key of it carries over
        type='convnext_dense.ConvNeXt',
        arch='tiny',
        out_indices=(0, 1, 2, 3),  # strides 4/8/16/32, one per UPerHead input
        drop_path_rate=0.4,
        # overwritten by the pretrained gamma; 1.0 as in the released configs
        layer_scale_init_value=1.0),
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes))

# AdamW with stage-wise lr decay: downsample layers are scaled by
# 0.9 ** (num_layers + 1), stage s by 0.9 ** (num_layers - s), the rest by 1
optim_wrapper = dict(
    type='AmpOptimWrapper',  # fp16 with dynamic loss scale (T/S/B)
    constructor='convnext_dense.LayerDecayOptimizerConstructor',
    optimizer=dict(
        type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6))

# 16 images per iteration = 8 GPUs x 2 (train_dataloader.batch_size below);
# lr is not rescaled for other setups unless auto_scale_lr is enabled
auto_scale_lr = dict(enable=False, base_batch_size=16)

# linear warm-up over 1500 iterations from lr x 1e-6, then poly (power 1, to
# 0) down to iteration 160k
max_iters = 160000
warmup_iters = 1500
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
         end=warmup_iters),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False,
         begin=warmup_iters, end=max_iters),
]
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=max_iters,
    val_interval=max_iters // 10)  # 16k, as mmseg's 160k schedule
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(
        type=_base_.atomic_checkpoint_hook,  # reliability.py
        by_epoch=False,
        interval=max_iters // 10),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
