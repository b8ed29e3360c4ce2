"""The paper's table and the generated report
(convnext_dense/analysis/complexity_report.py, tools/analysis/get_flops.py).

The three T configs are counted at full size against the paper's table
(5-8 s each: the counter computes no products).
"""
from __future__ import annotations

import importlib.util
import os.path as osp
import runpy
from pathlib import Path

import pytest
from mmengine.config import Config

from convnext_dense.analysis.complexity import (DET_INPUT_SIZE, Complexity,
                                                config_complexity,
                                                default_input_size)
from convnext_dense.analysis.complexity_report import (PAPER_COMPLEXITY,
                                                       analysis_document,
                                                       complexity_table,
                                                       model_configs)

from .test_flops_forward import TINY_UPERNET

REPO = Path(__file__).resolve().parents[2]
needs_mm = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ('mmdet', 'mmseg')),
    reason='mmdet and mmseg are needed')


@needs_mm
def test_paper_input_sizes_and_every_config_listed():
    configs = model_configs(str(REPO / 'configs'))
    names = [osp.splitext(osp.basename(c))[0] for c in configs]
    # every model config has a row in the paper table (None: unpublished)
    assert set(names) <= set(PAPER_COMPLEXITY)
    assert names == [n for n in PAPER_COMPLEXITY if n in names]
    # configs/convnext_v2/, configs/dinov3/, configs/mask2former/,
    # configs/dino/ too, not _base_ or demo
    assert len(names) == 16 + 4 + 8 + 12 + 6
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
             DET_INPUT_SIZE,
             'dino/dino_convnext_t_in22k_384_4scale_12e': DET_INPUT_SIZE}
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
    paper = PAPER_COMPLEXITY[name]
    measured = config_complexity(str(REPO / 'configs' / f'{name}.py'))
    assert measured.input_size == paper.input_size
    assert measured.params / 1e6 == pytest.approx(paper.params_m, rel=0.02)
    assert measured.flops / 1e9 == pytest.approx(paper.gflops, rel=0.02)


def test_get_flops_without_config_asks_for_all():
    # it used to start counting every config: minutes
    main = runpy.run_path(str(REPO / 'tools' / 'analysis' / 'get_flops.py'),
                          run_name='get_flops')['main']
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == (
        'error: name CONFIG files, or --all for every model config '
        '(about 5 minutes on two cores)')


@needs_mm
def test_model_analysis_doc_is_what_the_generator_writes():
    """docs/model_analysis.md: the header analysis_document writes, and one
    row per model config in model_configs' order."""
    text = (REPO / 'docs' / 'model_analysis.md').read_text()
    header, table = text.split('\n| config |', 1)
    command = header.split('Generated by `', 1)[1].split('`', 1)[0]
    assert header == analysis_document([], command).split(
        '\n| config |', 1)[0]
    rows = [line.split(' | ', 1)[0][2:]
            for line in table.splitlines()[2:] if line.startswith('| ')]
    assert rows == [osp.splitext(osp.basename(c))[0]
                    for c in model_configs(str(REPO / 'configs'))]
