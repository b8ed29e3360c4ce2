from .checkpoint import (FORMATS, from_official, load_backbone_checkpoint,
                         read_checkpoint, to_official)
from .convnext import ARCH_SETTINGS, ConvNeXt

__all__ = [
    'ARCH_SETTINGS', 'ConvNeXt', 'FORMATS', 'from_official',
    'load_backbone_checkpoint', 'read_checkpoint', 'to_official'
]
