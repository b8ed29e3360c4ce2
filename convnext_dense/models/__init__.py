from . import checkpoint_io  # noqa: F401  (mmengine's loaders: safe reads)
from .checkpoint import (FORMATS, compare_state_dicts, from_official,
                         load_backbone_checkpoint, read_checkpoint,
                         to_official)
from .convnext import ARCH_SETTINGS, ConvNeXt
from .fast import ChannelsLastHook, compile_backbone, guard_mmcv_ops

__all__ = [
    'ARCH_SETTINGS', 'ChannelsLastHook', 'ConvNeXt', 'FORMATS',
    'compare_state_dicts', 'compile_backbone', 'from_official', 'guard_mmcv_ops',
    'load_backbone_checkpoint', 'read_checkpoint', 'to_official'
]
