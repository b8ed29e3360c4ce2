"""The benchmark's arithmetic and page, without timing anything
(convnext_dense/analysis/timing.py, report.py, speed.py)."""
from __future__ import annotations

import pytest

from convnext_dense.analysis import report, speed
from convnext_dense.analysis.timing import ThroughputRow, round_ratio_range
from convnext_dense.models import ARCH_SETTINGS


def throughput_row(ratio: float, low: float, high: float) -> ThroughputRow:
    return ThroughputRow(
        device='cpu', size=(1, 8, 8), dtype='fp32', layout='NCHW',
        pass_='forward', images_per_s={'ours': ratio, 'timm': 1.0},
        spread=0., round_ratios={'timm': (low, high)})


def test_round_ratios_and_the_target_count() -> None:
    # seconds per round; ours is faster in round 0 and slower in round 1
    times = {'ours': [1.0, 2.0], 'timm': [1.5, 1.0]}
    assert round_ratio_range(times, 'timm') == (0.5, 1.5)

    rows = [throughput_row(1.1, 1.0, 1.2), throughput_row(0.95, 0.9, 1.05),
            throughput_row(0.8, 0.7, 0.9)]
    text, met = report._target(rows, 'timm', 1.0)
    assert met == 'no'
    assert text.startswith('1 of 3 cells; lowest 0.80x')
    # only the third is below 1.0x in every round; the second is noise
    assert text.endswith('below 1.0x in every round: 1 of 3 cells')
    assert report._ratio_cell(rows[1], 'timm') == '0.95x (0.90-1.05)'


def page(throughput: list, memory: list, detector: list) -> str:
    return report.render(dict(
        date='2026-01-01 00:00 UTC', command='python x', load=[0., 0.],
        repeats=1, clocks='cpu: wall clock', compile_backend='eager',
        det_rois='cpu: 8', notes=[], throughput=throughput, compiled=[],
        memory=memory, detector=detector, versions={'torch': '0'},
        machine=dict(cpu='x', cores=2, gpu='none', threads=1, bf16='none')))


def targets(text: str) -> list[list[str]]:
    section = text.split('## Targets\n', 1)[1].split('\n## ', 1)[0]
    lines = [line for line in section.splitlines() if line.startswith('|')]
    return [[cell.strip() for cell in line.strip('|').split('|')]
            for line in lines[2:]]  # past the header and its rule


@pytest.mark.parametrize('timm_speedup,met', [(1.0, 'yes'), (1.5, 'no')])
def test_targets_come_from_the_named_constants(monkeypatch, timm_speedup,
                                               met) -> None:
    """Moving a target moves its text and its verdict."""
    monkeypatch.setattr(report, 'TIMM_SPEEDUP', timm_speedup)
    monkeypatch.setattr(report, 'WITH_CP_MEMORY_CUT', 0.5)
    monkeypatch.setattr(report, 'DETECTOR_SPEEDUP', 1.25)
    text = page(
        [throughput_row(1.2, 1.1, 1.3)],
        [dict(device='cpu', size=(1, 8, 8), plain=2.0, with_cp=1.2,
              reduction=0.4, masked=False)],
        [dict(device='cpu', size=(1, 8, 8), dtype='fp32', spread=0.,
              seconds={'ours': 1.0, 'ours, channels-last': 1.0,
                       'mmdet': 1.2})])
    timm, mmpretrain, memory, detector = targets(text)
    assert f'ours >= {timm_speedup:.1f}x timm' in timm[0]
    assert timm[2] == met
    assert mmpretrain[1:] == ['not measured', '-']
    assert 'by >= 50%' in memory[0] and memory[1:] == ['40%', 'no']
    assert detector[1:] == ['1.20x', 'no']


@pytest.mark.parametrize('arch', speed.ARCHS)
def test_benchmark_archs_are_the_backbone_s(arch) -> None:
    """timm's and our backbone of an arch have the dims of ARCH_SETTINGS."""
    ours = speed.build_backbone('ours', arch)
    timm = speed.build_backbone('timm', arch)
    dims = list(ARCH_SETTINGS[arch]['dims'])
    assert list(ours.out_channels) == dims
    assert timm.feature_info.channels() == dims
    assert [len(stage.blocks) for stage in timm.values()
            if hasattr(stage, 'blocks')] == list(ARCH_SETTINGS[arch]['depths'])
