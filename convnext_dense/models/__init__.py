from . import checkpoint_io  # noqa: F401  (mmengine's loaders: safe reads)
from .checkpoint import (FORMATS, compare_state_dicts, from_official,
                         load_backbone_checkpoint, read_checkpoint,
                         to_official)
from .convnext import ARCH_SETTINGS, ConvNeXt

__all__ = [
    'ARCH_SETTINGS', 'ConvNeXt', 'FORMATS', 'compare_state_dicts',
    'from_official', 'load_backbone_checkpoint', 'read_checkpoint',
    'to_official'
]
