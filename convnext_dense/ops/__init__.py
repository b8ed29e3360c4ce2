"""Ops that mmcv compiles, from torch and torchvision instead: RoIAlign,
NMS, soft-NMS and multi-scale deformable attention.

Importing ``convnext_dense`` imports this package first, which installs
:mod:`convnext_dense.ops.mmcv_ext` as ``mmcv._ext`` when mmcv has no
compiled ops (mmcv-lite, the default install), before mmdet or mmseg import
``mmcv.ops``. An mmcv with its compiled ops is left alone.
"""
from .mmcv_ext import INSTALL_HINT, OPS, install, mmcv_ops_source

install()

__all__ = ['INSTALL_HINT', 'OPS', 'install', 'mmcv_ops_source']
