# Mask R-CNN, ConvNeXt-B (ImageNet-1K), 1x, COCO: 47.0 box / 42.7 mask AP
# reported after the paper; no official config was released. Assumed: the
# T 1x settings (lr 1e-4, decay 0.95) with the drop path of the B cascade
# (0.7) and N = 12.
_base_ = './mask_rcnn_convnext_t_1x.py'

checkpoint = 'checkpoints/convnext_base_1k_224.pth'

model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.7,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[128, 256, 512, 1024]))

# N = 3 + ceil(27 / 3) = 12 layers for a stage 2 of 27 blocks
optim_wrapper = dict(
    paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise',
                       num_layers=12))
