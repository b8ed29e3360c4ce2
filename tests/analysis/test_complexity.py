"""Complexity counting (convnext_dense/analysis/complexity.py,
tools/analysis/get_flops.py).

Complexity: mmengine's counter is checked against closed-form counts of
ConvNeXt (every parameter; every multiply-add of convolutions, linear
layers and layer norms) and against the paper's ConvNeXt-T classifier
(28.6M parameters, 4.5 GMACs at 224). The detection convention (box heads
on 1000 proposals, mask heads on 100) is checked by the cost one more RoI
adds, computed by hand from the head's layer sizes. The three T configs
are counted at full size against the paper's table (about 70 s).
"""
from __future__ import annotations

import importlib.util
import os.path as osp
import runpy
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from convnext_dense.analysis.complexity import (
    DET_INPUT_SIZE, PAPER_CLASSIFIER, PAPER_COMPLEXITY, Complexity,
    classifier_complexity, complexity_table, config_complexity,
    count_complexity, default_input_size, model_configs)
from convnext_dense.models import ConvNeXt
from convnext_dense.models.convnext import ARCH_SETTINGS

REPO = Path(__file__).resolve().parents[2]
needs_mm = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ('mmdet', 'mmseg')),
    reason='mmdet and mmseg are needed')


# ---------------------------------------------------------------------------
# closed forms of the ConvNeXt classifier
# ---------------------------------------------------------------------------

def closed_form_classifier(depths, dims, size: int, num_classes: int = 1000
                           ) -> dict[str, int]:
    """Parameters and per-operator multiply-adds of a ConvNeXt classifier
    on one size x size image, derived from the architecture
    (docs/reference.md §1). Layer norms count 5 per element, mmengine's rule
    for an affine norm."""
    params = conv = linear = norm_elements = 0
    res = size // 4
    # stem: 4x4 conv stride 4, then LN
    params += 3 * 16 * dims[0] + dims[0] + 2 * dims[0]
    conv += res * res * dims[0] * 3 * 16
    norm_elements += res * res * dims[0]
    for i, (depth, dim) in enumerate(zip(depths, dims)):
        if i > 0:  # LN, then 2x2 conv stride 2
            prev = dims[i - 1]
            params += 2 * prev + 4 * prev * dim + dim
            norm_elements += res * res * prev
            res //= 2
            conv += res * res * dim * prev * 4
        # block: dwconv 7x7 (+bias), LN, Linear(d, 4d), Linear(4d, d), gamma
        params += depth * (49 * dim + dim + 2 * dim + 4 * dim * dim +
                           4 * dim + 4 * dim * dim + dim + dim)
        conv += depth * res * res * 49 * dim
        linear += depth * res * res * 8 * dim * dim
        norm_elements += depth * res * res * dim
    # final LN on the pooled (1, C) vector, then the linear head
    params += 2 * dims[-1] + dims[-1] * num_classes + num_classes
    norm_elements += dims[-1]
    linear += dims[-1] * num_classes
    return dict(params=params, conv=conv, linear=linear,
                layer_norm=5 * norm_elements)


@pytest.mark.parametrize('arch,size', [('test', 64), ('tiny', 224),
                                       ('base', 96)])
def test_counter_equals_closed_form(arch, size):
    settings = ARCH_SETTINGS[arch]
    expected = closed_form_classifier(settings['depths'], settings['dims'],
                                      size)
    measured = classifier_complexity(arch, size)
    assert measured.params == expected['params']
    assert measured.by_operator == {
        key: expected[key] for key in ('conv', 'linear', 'layer_norm')
    }
    assert measured.flops == sum(measured.by_operator.values())


def test_tiny_classifier_matches_paper():
    """ConvNeXt-T at 224: 28.6M parameters and 4.5 G multiply-adds."""
    paper = PAPER_CLASSIFIER['tiny']
    measured = classifier_complexity('tiny', 224)
    assert measured.params == 28_589_128  # timm's convnext_tiny, exactly
    assert measured.params / 1e6 == pytest.approx(paper.params_m, rel=0.02)
    assert measured.flops / 1e9 == pytest.approx(paper.gflops, rel=0.02)


# ---------------------------------------------------------------------------
# detection and segmentation configs
# ---------------------------------------------------------------------------

TINY_CASCADE = """
_base_ = '{repo}/configs/cascade_convnext_t.py'
channels = 32
model = dict(
    backbone=dict(arch='test', init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=channels),
    rpn_head=dict(in_channels=channels, feat_channels=channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels),
        bbox_head=[
            dict(head, in_channels=channels, conv_out_channels=channels,
                 fc_out_channels=64, num_classes=3)
            for head in _base_.model.roi_head.bbox_head
        ],
        mask_roi_extractor=dict(out_channels=channels),
        mask_head=dict(in_channels=channels, conv_out_channels=channels,
                       num_classes=3)))
"""

TINY_UPERNET = """
_base_ = '{repo}/configs/upernet_convnext_t.py'
model = dict(
    backbone=dict(arch='test', init_cfg=None),
    decode_head=dict(in_channels=[16, 32, 64, 128], channels=16,
                     num_classes=5),
    auxiliary_head=dict(in_channels=64, channels=16, num_classes=5))
"""


def tiny_config(text: str, tmp_path: Path, **options) -> Config:
    path = tmp_path / 'tiny.py'
    path.write_text(text.format(repo=REPO))
    cfg = Config.fromfile(str(path))
    cfg.merge_from_dict(options)
    return cfg


@needs_mm
def test_detector_counts_box_heads_per_proposal_mask_heads_per_roi(
        tmp_path):
    """Each extra proposal costs three box heads; each extra mask RoI three
    mask heads (cascade stages), as computed from the layer sizes."""
    cfg = tiny_config(TINY_CASCADE, tmp_path)
    size = (96, 64)

    def count(proposals: int, mask_rois: int) -> Complexity:
        return config_complexity(cfg, size, num_proposals=proposals,
                                 num_mask_rois=mask_rois)

    base, more = count(20, 10), count(30, 15)
    c, fc, classes, stages = 32, 64, 3, 3
    # 4 shared 3x3 convs on 7x7 RoI features, 1 fc, class scores (+bg),
    # class-specific box deltas
    box_conv = 4 * (7 * 7 * c * c * 9)
    box_linear = 7 * 7 * c * fc + fc * (classes + 1) + fc * 4 * classes
    # 4 3x3 convs at 14x14, 2x2 deconv to 28x28 (counted per input pixel),
    # 1x1 class logits at 28x28
    mask_conv = (4 * (14 * 14 * c * c * 9) + 14 * 14 * c * c * 4 +
                 28 * 28 * c * classes)

    def delta(op: str) -> int:
        return more.by_operator.get(op, 0) - base.by_operator.get(op, 0)

    # 10 more proposals through 3 box heads, 5 more RoIs through 3 mask
    # heads (all 10 would add 5 * stages * mask_conv more)
    assert delta('conv') == stages * (10 * box_conv + 5 * mask_conv)
    assert delta('linear') == stages * 10 * box_linear
    assert base.params == more.params
    assert base.input_size == size


@needs_mm
def test_segmentor_counts_decode_head_not_auxiliary(tmp_path):
    cfg = tiny_config(TINY_UPERNET, tmp_path)
    with_aux = config_complexity(cfg, (128, 64))
    cfg.model.auxiliary_head = None
    without_aux = config_complexity(cfg, (128, 64))
    # the auxiliary FCN head has weights but no cost at test time
    assert with_aux.params > without_aux.params
    assert with_aux.flops == without_aux.flops > 0


@needs_mm
@pytest.mark.slow  # 20-27 s on two busy cores
def test_mask2former_counts_every_decoder_layer():
    """The CPU demo's Mask2Former (tiny backbone, 32-channel head) with 3,
    6 and 9 decoder layers: each 3 more add the same multiply-adds (the
    layers and their predictions are alike), and each 3 the same parameters;
    the head costs more than nothing."""
    cfg = Config.fromfile(
        str(REPO / 'configs' / 'demo' / 'mask2former_convnext_demo.py'))
    counts = []
    for layers in (3, 6, 9):
        cfg.model.decode_head.transformer_decoder.num_layers = layers
        counts.append(config_complexity(cfg, (64, 64)))
    flops = [c.flops for c in counts]
    assert flops[1] - flops[0] == flops[2] - flops[1] > 0
    params = [c.params for c in counts]
    assert params[1] - params[0] == params[2] - params[1] > 0
    backbone = count_complexity(ConvNeXt('test'),
                                (torch.zeros(1, 3, 64, 64), ), (64, 64))
    assert flops[0] > backbone.flops


@needs_mm
def test_paper_input_sizes_and_every_config_listed():
    configs = model_configs(str(REPO / 'configs'))
    names = [osp.splitext(osp.basename(c))[0] for c in configs]
    # every model config has a row in the paper table (None: unpublished)
    assert set(names) <= set(PAPER_COMPLEXITY)
    assert names == [n for n in PAPER_COMPLEXITY if n in names]
    # configs/convnext_v2/, configs/dinov3/, configs/mask2former/ too, not
    # _base_ or demo
    assert len(names) == 16 + 4 + 8 + 12
    assert {'upernet_convnext_v2_t', 'cascade_convnext_dinov3_b_frozen'} \
        <= set(names)
    sizes = {'cascade_convnext_t': DET_INPUT_SIZE,
             'mask_rcnn_convnext_t': DET_INPUT_SIZE,
             'upernet_convnext_t': (2048, 512),
             'upernet_convnext_b_in22k_640': (2560, 640),
             'mask2former/mask2former_convnext_t_ade20k_512': (2048, 512),
             'mask2former/mask2former_convnext_l_in22k_ade20k_640':
             (2560, 640),
             'mask2former/mask2former_convnext_t_coco_instance':
             DET_INPUT_SIZE}
    for name, size in sizes.items():
        cfg = Config.fromfile(str(REPO / 'configs' / f'{name}.py'))
        assert default_input_size(cfg) == size
        paper = PAPER_COMPLEXITY[osp.basename(name)]
        assert paper is None or paper.input_size == size


def test_complexity_table():
    rows = [
        ('cascade_convnext_t', Complexity(87_720_000, 726_180_000_000,
                                          (1280, 800))),
        ('mask_rcnn_convnext_s_1x', Complexity(69_000_000, 3e11,
                                               (1280, 800))),
        # at another size than the paper's: nothing to compare with
        ('upernet_convnext_t', Complexity(60_000_000, 1e11, (512, 512))),
    ]
    lines = complexity_table(rows).splitlines()
    assert lines[2] == ('| cascade_convnext_t | 1280x800 | 87.7 | 86 | '
                        '+2.0% | 726 | 741 | -2.0% |')
    assert lines[3] == ('| mask_rcnn_convnext_s_1x | 1280x800 | 69.0 | – '
                        '| – | 300 | – | – |')
    assert lines[4] == ('| upernet_convnext_t | 512x512 | 60.0 | – | – | '
                        '100 | – | – |')


@needs_mm
def test_get_flops_tool_writes_report(tmp_path):
    config = tmp_path / 'tiny_upernet.py'
    config.write_text(TINY_UPERNET.format(repo=REPO))
    out = tmp_path / 'docs' / 'analysis.md'
    main = runpy.run_path(str(REPO / 'tools' / 'analysis' / 'get_flops.py'),
                          run_name='get_flops')['main']
    [(name, measured)] = main(
        [str(config), '--shape', '64', '128', '--out', str(out)])  # H W
    assert name == 'tiny_upernet'
    assert measured.input_size == (128, 64)
    text = out.read_text()
    assert 'multiply-adds' in text
    assert (f'| tiny_upernet | 128x64 | {measured.params / 1e6:.1f} | – |'
            in text)
    assert '28.59M params, 4.47 GFLOPs' in text  # the classifier check


@needs_mm
@pytest.mark.parametrize('name', ['mask_rcnn_convnext_t',
                                  'cascade_convnext_t',
                                  'upernet_convnext_t'])
@pytest.mark.slow
def test_t_configs_match_paper(name):
    """About a minute each on two cores."""
    paper = PAPER_COMPLEXITY[name]
    measured = config_complexity(str(REPO / 'configs' / f'{name}.py'))
    assert measured.input_size == paper.input_size
    assert measured.params / 1e6 == pytest.approx(paper.params_m, rel=0.02)
    assert measured.flops / 1e9 == pytest.approx(paper.gflops, rel=0.02)


def test_get_flops_without_config_asks_for_all():
    # it used to start counting every config: 6-11 minutes on two cores
    main = runpy.run_path(str(REPO / 'tools' / 'analysis' / 'get_flops.py'),
                          run_name='get_flops')['main']
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == (
        'error: name CONFIG files, or --all for every model config '
        '(6-11 minutes on two cores)')
