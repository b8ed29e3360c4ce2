# Mask R-CNN, ConvNeXt-S (ImageNet-1K), 1x, COCO: 45.4 box / 41.8 mask AP
# reported after the paper; no official config was released. Assumed: the
# T 1x settings (lr 1e-4, decay 0.95) with the drop path of the S cascade
# (0.6) and N = 12.
_base_ = './mask_rcnn_convnext_t_1x.py'

checkpoint = 'checkpoints/convnext_small_1k_224.pth'

model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.6,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[96, 192, 384, 768]))

# N = 3 + ceil(27 / 3) = 12 layers for a stage 2 of 27 blocks
optim_wrapper = dict(
    paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise',
                       num_layers=12))
