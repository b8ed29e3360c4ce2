"""The authors' released COCO and ADE20K checkpoints fit our configs.

Nothing can be downloaded here, so each released model is described by
what its authors' configs say (mmdet 2.11 / mmseg 0.x; ConvNeXt repo,
object_detection/configs/convnext and semantic_segmentation/configs/
convnext) and their READMEs' parameter counts:

- anchor tensors, name and shape, of every part (backbone stem, last
  stage, out norms, FPN, RPN, the RoI heads with their 81-way classifiers
  and class-specific GIoU regressors, the UperNet and FCN heads with 150
  classes);
- the parameter count of the README (48M ... 407M), which no anchor list
  covers and which a wrong depth, width or head would change.

A state dict named as theirs (mmdet 3.x and mmseg 1.x kept these module
names) must then load strictly through our loader.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

from mmengine.config import Config  # noqa: E402

from convnext_dense.tasks import build_model  # noqa: E402
from convnext_dense.checkpoint.mismatch import \
    check_checkpoint_fits  # noqa: E402
from convnext_dense.checkpoint.released import RELEASED  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

# the authors' arch settings: dims per stage, depth of stage 2
ARCHS = {'t': ((96, 192, 384, 768), 9), 's': ((96, 192, 384, 768), 27),
         'b': ((128, 256, 512, 1024), 27),
         'l': ((192, 384, 768, 1536), 27),
         'xl': ((256, 512, 1024, 2048), 27)}
# #params of the authors' READMEs, millions
PARAMS = {
    'mask_rcnn_convnext_tiny_1k_3x': 48,
    'cascade_mask_rcnn_convnext_tiny_1k_3x': 86,
    'cascade_mask_rcnn_convnext_small_1k_3x': 108,
    'cascade_mask_rcnn_convnext_base_1k_3x': 146,
    'cascade_mask_rcnn_convnext_base_22k_3x': 146,
    'cascade_mask_rcnn_convnext_large_22k_3x': 255,
    'cascade_mask_rcnn_convnext_xlarge_22k_3x': 407,
    'upernet_convnext_tiny_1k_512x512': 60,
    'upernet_convnext_small_1k_512x512': 82,
    'upernet_convnext_base_1k_512x512': 122,
    'upernet_convnext_base_22k_640x640': 122,
    'upernet_convnext_large_22k_640x640': 235,
    'upernet_convnext_xlarge_22k_640x640': 391,
}


def arch_of(url: str) -> str:
    name = url.rsplit('/', 1)[1]
    return next(key for word, key in (('tiny', 't'), ('small', 's'),
                                      ('base', 'b'), ('xlarge', 'xl'),
                                      ('large', 'l')) if f'_{word}_' in name)


def anchors(url: str) -> dict[str, tuple]:
    """Tensor name -> shape, from the authors' configs."""
    dims, depth2 = ARCHS[arch_of(url)]
    shapes = {
        'backbone.downsample_layers.0.0.weight': (dims[0], 3, 4, 4),
        'backbone.downsample_layers.3.1.weight': (dims[3], dims[2], 2, 2),
        # pointwise convs are nn.Linear in the official block
        f'backbone.stages.2.{depth2 - 1}.pwconv1.weight':
            (4 * dims[2], dims[2]),
        'backbone.stages.3.2.gamma': (dims[3], ),
        'backbone.norm3.weight': (dims[3], ),
    }
    if '/coco/' in url:
        shapes.update({
            'neck.lateral_convs.3.conv.weight': (256, dims[3], 1, 1),
            'rpn_head.rpn_cls.weight': (3, 256, 1, 1),  # 3 anchors, sigmoid
            'rpn_head.rpn_reg.weight': (12, 256, 1, 1),
        })
        if 'cascade' in url:  # 4conv1fc GIoU heads, class-specific reg
            for i in range(3):
                head = f'roi_head.bbox_head.{i}.'
                shapes.update({
                    head + 'shared_convs.3.conv.weight': (256, 256, 3, 3),
                    head + 'shared_fcs.0.weight': (1024, 256 * 7 * 7),
                    head + 'fc_cls.weight': (81, 1024),
                    head + 'fc_reg.weight': (320, 1024),
                    f'roi_head.mask_head.{i}.conv_logits.weight':
                        (80, 256, 1, 1),
                })
        else:  # Shared2FCBBoxHead
            shapes.update({
                'roi_head.bbox_head.shared_fcs.1.weight': (1024, 1024),
                'roi_head.bbox_head.fc_cls.weight': (81, 1024),
                'roi_head.bbox_head.fc_reg.weight': (320, 1024),
                'roi_head.mask_head.conv_logits.weight': (80, 256, 1, 1),
            })
    else:
        shapes.update({
            'decode_head.psp_modules.0.1.conv.weight': (512, dims[3], 1, 1),
            'decode_head.lateral_convs.0.conv.weight': (512, dims[0], 1, 1),
            'decode_head.fpn_bottleneck.conv.weight': (512, 2048, 3, 3),
            'decode_head.conv_seg.weight': (150, 512, 1, 1),
            'auxiliary_head.convs.0.conv.weight': (256, dims[2], 3, 3),
            'auxiliary_head.conv_seg.weight': (150, 256, 1, 1),
        })
    return shapes


def their_checkpoint(state: dict, url: str, device: str = 'meta') -> dict:
    """A checkpoint as mmdet 2.x / mmseg 0.x saved the released ones: the
    tensors under ``state_dict``, classes under ``meta.CLASSES``."""
    num = 80 if '/coco/' in url else 150
    return dict(
        meta=dict(CLASSES=tuple(f'class{i}' for i in range(num)),
                  mmcv_version='1.3.17', epoch=36),
        state_dict={key: torch.zeros(value.shape, dtype=value.dtype,
                                     device=device)
                    for key, value in state.items()})


def param(released):
    small = arch_of(released.url) == 't'
    return pytest.param(released, id=Path(released.config).stem,
                        marks=() if small else pytest.mark.slow)


@pytest.mark.parametrize('released', [param(r) for r in RELEASED])
def test_released_checkpoint_fits_its_config(released):
    with torch.device('meta'):
        model = build_model(Config.fromfile(str(REPO / released.config)))
    state = model.state_dict()
    for key, shape in anchors(released.url).items():
        assert key in state, key
        assert tuple(state[key].shape) == shape, key
    params = sum(p.numel() for p in model.parameters())
    name = released.url.rsplit('/', 1)[1][:-4]
    assert round(params / 1e6) == PARAMS[name], params
    check_checkpoint_fits(model, their_checkpoint(state, released.url),
                          released.url)


def test_every_row_is_in_the_docs_table():
    table = (REPO / 'docs' / 'released_models.md').read_text()
    for released in RELEASED:
        assert (f'python tools/test.py {released.config} {released.url}'
                in table)
        assert released.metrics in table


@pytest.mark.slow
def test_released_mask_rcnn_file_loads_strictly(tmp_path):
    """A file in the authors' format, through the loader tools/infer.py
    and tools/test.py use (weights-only unpickling, strict)."""
    from convnext_dense.apis.model_files import load_checkpoint_strict
    released = RELEASED[0]
    model = build_model(Config.fromfile(str(REPO / released.config)))
    path = tmp_path / released.url.rsplit('/', 1)[1]
    torch.save(their_checkpoint(model.state_dict(), released.url, 'cpu'),
               path)
    meta = load_checkpoint_strict(model, str(path))
    assert len(meta['CLASSES']) == 80
    assert all(not value.any() for value in model.state_dict().values()
               if value.is_floating_point())
