"""Synthetic datasets in standard layouts, for CPU demos and tests.

Plain generators (numpy, OpenCV, pycocotools); nothing here is registered or
needs mmdet, so data can be written before any model code is imported.
"""
from .toy_coco import generate_toy_coco

__all__ = ['generate_toy_coco']
