# The ConvNeXt detection schedule: AdamW with layer-wise lr decay for 3x
# (36 epochs; lr x0.1 after epochs 27 and 33) at batch 16 = 8 GPUs x 2
# images (mmdet's auto_scale_lr base_batch_size=16 is kept), fp16 AMP with
# dynamic loss scaling, no gradient clipping. Leaf configs set lr and the
# decay rate / layer count of their row of the paper's table.
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

max_epochs = 36  # 3x = 3 x 12 epochs
train_cfg = dict(max_epochs=max_epochs)

param_scheduler = [
    # linear warm-up from 0.001 x lr over the first 500 iterations (the
    # official setting; mmdet's port uses 1000)
    dict(
        type='LinearLR', start_factor=0.001, by_epoch=False, begin=0,
        end=500),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_epochs,
        by_epoch=True,
        milestones=[27, 33],
        gamma=0.1),
]

optim_wrapper = dict(
    type='AmpOptimWrapper',
    constructor='convnext_dense.LayerDecayOptimizerConstructor',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=2e-4,
        betas=(0.9, 0.999),
        weight_decay=0.05),
    paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise', num_layers=6))
