# mmdet's default runtime (logging, visualizer, checkpoint every epoch) with
# this package's recoverable-training hooks (reliability.py).
_base_ = ['mmdet::_base_/default_runtime.py', './reliability.py']

default_hooks = dict(checkpoint=dict(type=_base_.atomic_checkpoint_hook))
# mmdet's visualizer without its spurious out-of-bounds warnings for boxes
# that touch the image border (convnext_dense/engine/quiet.py)
visualizer = dict(type='convnext_dense.DetLocalVisualizer', _scope_='mmdet')
