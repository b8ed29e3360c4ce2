# cascade_convnext_dinov3_b.py with the whole backbone frozen (DINOv3's
# claim is features that need no fine-tuning, docs/reference.md §8): only
# the output norms norm0..3, the FPN and the heads train.
_base_ = './cascade_convnext_dinov3_b.py'

model = dict(
    backbone=dict(
        frozen_stages=4,  # stem, all downsampling layers, all four stages
        # frozen stages stay in eval mode, where drop path is off anyway
        drop_path_rate=0.))

# nothing the decay would scale is trained (the constructor leaves frozen
# parameters out; norm0..3 have scale 1): decay_rate 1 says so
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=1.0))
