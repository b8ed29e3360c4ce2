# UperNet + ConvNeXt-V2-B (IN-1K fine-tuned) on ADE20K, 512 crops, 160k:
# the V2 paper's recipe (docs/reference.md §7). Not trained here.
_base_ = './upernet_convnext_v2_t.py'

checkpoint = 'checkpoints/convnextv2_base_1k_224_ema.pt'

model = dict(
    backbone=dict(
        arch='v2-base',
        drop_path_rate=0.4,  # top of the paper's 0.1..0.4 for the larger B
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512))

# N = 3 + ceil(27 / 3) = 12
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
