# Mask2Former + ConvNeXt-V2-T (IN-1K fine-tuned) on ADE20K, 512 crops, 160k
# iterations x 16 images: the T config with the V2 backbone, drop path as
# configs/convnext_v2/upernet_convnext_v2_t.py. Not published; not trained
# here.
_base_ = ['./mask2former_convnext_t_ade20k_512.py']

checkpoint = 'checkpoints/convnextv2_tiny_1k_224_ema.pt'

model = dict(
    backbone=dict(
        arch='v2-tiny',  # GRN (no weight decay), no layer scale
        # the V2 paper searched 0.1..0.4 for UperNet; 0.3 for T (assumed)
        drop_path_rate=0.3,
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))
