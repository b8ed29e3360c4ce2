from .convnext import ARCH_SETTINGS, ConvNeXt

__all__ = ['ARCH_SETTINGS', 'ConvNeXt']
