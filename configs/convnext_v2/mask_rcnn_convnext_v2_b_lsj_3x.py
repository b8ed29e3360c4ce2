# Mask R-CNN, ConvNeXt-V2-B (FCMAE, then IN-1K fine-tuned), 3x with
# large-scale jitter, COCO: the V2 paper's recipe as mmdet's pre-release
# V2-B config sets it (docs/reference.md §7: 52.9 box / 46.4 mask AP there,
# secondary). Not trained here.
_base_ = './mask_rcnn_convnext_v2_t_lsj_3x.py'

checkpoint = 'checkpoints/convnextv2_base_1k_224_ema.pt'

model = dict(
    backbone=dict(
        arch='v2-base',
        drop_path_rate=0.4,  # mmdet's V2-B value, inside the paper's 0.2..0.5
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    neck=dict(in_channels=[128, 256, 512, 1024]))

# layer_wise 0.95, N = 3 + ceil(27 / 3) = 12, as mmdet's V2-B config
optim_wrapper = dict(
    paramwise_cfg=dict(decay_rate=0.95, decay_type='layer_wise',
                       num_layers=12))
