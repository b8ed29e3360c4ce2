# upernet_convnext_dinov3_b.py with the whole backbone frozen: only the
# output norms norm0..3 and the UperNet heads train (docs/reference.md §8).
_base_ = './upernet_convnext_dinov3_b.py'

model = dict(
    backbone=dict(
        frozen_stages=4,  # stem, all downsampling layers, all four stages
        drop_path_rate=0.))  # frozen stages stay in eval mode: no drop path

# the constructor leaves frozen parameters out and norm0..3 have scale 1:
# decay_rate 1 says that no decay applies
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=1.0))
