"""The COCO and ADE20K models the ConvNeXt authors released, and the
config of this package each one loads into.

Their checkpoints were trained with mmdet 2.11 (Swin-Transformer-Object-
Detection) and mmseg 0.x (BEiT's semantic_segmentation); mmdet 3.x and
mmseg 1.x kept the module names of these heads, so the state dicts load
strictly, without renaming (``tests/checkpoint/test_released.py`` checks every
one against the key names and shapes of the authors' configs). The numbers
are the authors' (their READMEs and the paper), not measured here.
"""
from __future__ import annotations

from typing import NamedTuple

DET_URL = 'https://dl.fbaipublicfiles.com/convnext/coco/'
SEG_URL = 'https://dl.fbaipublicfiles.com/convnext/ade20k/'


class Released(NamedTuple):
    config: str  # relative to the repository
    url: str
    pretrain: str  # 'IN-1K' or 'IN-22K'
    metrics: str  # the authors' numbers


RELEASED: tuple[Released, ...] = (
    Released('configs/mask_rcnn_convnext_t.py',
             DET_URL + 'mask_rcnn_convnext_tiny_1k_3x.pth', 'IN-1K',
             'box AP 46.2, mask AP 41.7'),
    Released('configs/cascade_convnext_t.py',
             DET_URL + 'cascade_mask_rcnn_convnext_tiny_1k_3x.pth', 'IN-1K',
             'box AP 50.4, mask AP 43.7'),
    Released('configs/cascade_convnext_s.py',
             DET_URL + 'cascade_mask_rcnn_convnext_small_1k_3x.pth', 'IN-1K',
             'box AP 51.9, mask AP 45.0'),
    Released('configs/cascade_convnext_b.py',
             DET_URL + 'cascade_mask_rcnn_convnext_base_1k_3x.pth', 'IN-1K',
             'box AP 52.7, mask AP 45.6'),
    Released('configs/cascade_convnext_b_in22k.py',
             DET_URL + 'cascade_mask_rcnn_convnext_base_22k_3x.pth',
             'IN-22K', 'box AP 54.0, mask AP 46.9'),
    Released('configs/cascade_convnext_l_in22k.py',
             DET_URL + 'cascade_mask_rcnn_convnext_large_22k_3x.pth',
             'IN-22K', 'box AP 54.8, mask AP 47.6'),
    Released('configs/cascade_convnext_xl_in22k.py',
             DET_URL + 'cascade_mask_rcnn_convnext_xlarge_22k_3x.pth',
             'IN-22K', 'box AP 55.2, mask AP 47.7'),
    Released('configs/upernet_convnext_t.py',
             SEG_URL + 'upernet_convnext_tiny_1k_512x512.pth', 'IN-1K',
             'mIoU 46.0 (46.7 ms+flip)'),
    Released('configs/upernet_convnext_s.py',
             SEG_URL + 'upernet_convnext_small_1k_512x512.pth', 'IN-1K',
             'mIoU 48.7 (49.6 ms+flip)'),
    Released('configs/upernet_convnext_b.py',
             SEG_URL + 'upernet_convnext_base_1k_512x512.pth', 'IN-1K',
             'mIoU 49.1 (49.9 ms+flip)'),
    Released('configs/upernet_convnext_b_in22k_640.py',
             SEG_URL + 'upernet_convnext_base_22k_640x640.pth', 'IN-22K',
             'mIoU 52.6 (53.1 ms+flip)'),
    Released('configs/upernet_convnext_l_in22k_640.py',
             SEG_URL + 'upernet_convnext_large_22k_640x640.pth', 'IN-22K',
             'mIoU 53.2 (53.7 ms+flip)'),
    Released('configs/upernet_convnext_xl_in22k_640.py',
             SEG_URL + 'upernet_convnext_xlarge_22k_640x640.pth', 'IN-22K',
             'mIoU 53.6 (54.0 ms+flip)'),
)
