# Mask2Former + ConvNeXt-V2-B (IN-1K fine-tuned) on ADE20K, 512 crops, 160k
# iterations x 16 images: the B config with the V2 backbone, drop path as
# configs/convnext_v2/upernet_convnext_v2_b.py. Not published; not trained
# here.
_base_ = ['./mask2former_convnext_b_ade20k_512.py']

checkpoint = 'checkpoints/convnextv2_base_1k_224_ema.pt'

model = dict(
    backbone=dict(
        arch='v2-base',  # GRN (no weight decay), no layer scale
        # the V2 paper searched 0.1..0.4 for UperNet; 0.4 for B (assumed)
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))
