# Mask2Former + DINOv3 ConvNeXt-T (LVD-1689M) on ADE20K, 512 crops, 160k
# iterations x 16 images: the T config with DINOv3 weights (the V1 module
# names and widths, so nothing else changes). Not published; not trained
# here.
_base_ = ['./mask2former_convnext_t_ade20k_512.py']

checkpoint = 'checkpoints/dinov3_convnext_tiny_pretrain_lvd1689m-21b726bb.pth'

model = dict(
    backbone=dict(init_cfg=dict(type='Pretrained', checkpoint=checkpoint)))
