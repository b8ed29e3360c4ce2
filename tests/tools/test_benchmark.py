"""Smoke run of tools/analysis/benchmark.py at tiny sizes.

Every part runs (throughput of the three backbones, the with_cp memory
subprocesses, the two Cascade Mask R-CNN configs) on the 'test' arch, and
the markdown page must carry the machine, the command, the absolute numbers
and ratios that agree with them.
"""
from __future__ import annotations

import importlib.util
import os.path as osp
import re
import sys

import pytest

pytest.importorskip('mmpretrain')
pytest.importorskip('mmdet')

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def load_benchmark():
    spec = importlib.util.spec_from_file_location(
        'benchmark', osp.join(REPO_ROOT, 'tools', 'analysis', 'benchmark.py'))
    module = importlib.util.module_from_spec(spec)
    # dataclasses look their module up in sys.modules
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def table(text: str, heading: str) -> list[dict[str, str]]:
    """The rows of the markdown table under ``## heading``, as dicts."""
    section = text.split(f'## {heading}\n', 1)[1].split('\n## ', 1)[0]
    lines = [line for line in section.splitlines() if line.startswith('|')]
    header = [cell.strip() for cell in lines[0].strip('|').split('|')]
    return [dict(zip(header, (cell.strip()
                              for cell in line.strip('|').split('|'))))
            for line in lines[2:]]


def test_quick_smoke_run_writes_the_table(tmp_path) -> None:
    benchmark = load_benchmark()
    out = tmp_path / 'benchmarks.md'
    argv = ['--quick', '--arch', 'test', '--device', 'cpu', '--strict',
            '--sizes', '1x32x32', '--amp-sizes', '1x32x32',
            '--mem-size', '1x32x32', '--det-size', '1x64x64',
            '--det-rois', '8', '--repeats', '1', '--warmup', '0',
            '--parts', 'throughput', 'compiled', 'memory', 'detector',
            '--compiled-sizes', '2x32x32', '--compile-backend', 'eager',
            '--out', str(out)]
    report = benchmark.main(argv)
    text = out.read_text()

    assert 'python tools/analysis/benchmark.py ' + ' '.join(argv) in text
    assert 'torch threads' in text and 'load average' in text
    assert 'Incomplete' not in text

    rows = table(text, 'Backbone throughput (images/s)')
    # 1 size x (fp32, bf16) x 2 layouts x 2 passes
    assert len(rows) == len(report['throughput']) == 8
    assert {r['dtype'] for r in rows} == {'fp32', 'bf16'}
    assert {r['layout'] for r in rows} == {'NCHW', 'channels-last'}
    for row in rows:
        ours, timm, mmp = (float(row[k]) for k in
                           ('ours', 'timm', 'mmpretrain'))
        assert min(ours, timm, mmp) > 0
        # the ratio columns are ours over the other, from the same row,
        # then the range of the rounds' ratios (one round here: a point)
        for column, other in (('ours/timm', timm), ('ours/mmpretrain', mmp)):
            ratio, low, high = map(float, re.fullmatch(
                r'([\d.]+)x \(([\d.]+)-([\d.]+)\)', row[column]).groups())
            assert ratio == pytest.approx(ours / other, rel=0.02, abs=0.01)
            assert low == pytest.approx(ratio, abs=0.011)
            assert high == pytest.approx(ratio, abs=0.011)

    (compiled, ) = table(
        text, 'Compiled backbones: forward throughput (images/s)')
    assert (compiled['input'], compiled['dtype']) == ('2x32x32', 'fp32')
    ours, ours_c, timm_c = (float(compiled[k]) for k in
                            ('ours', 'ours, compiled', 'timm, compiled'))
    assert min(ours, ours_c, timm_c) > 0
    assert float(compiled['ours compiled / timm compiled'].rstrip('x')) == \
        pytest.approx(ours_c / timm_c, rel=0.02, abs=0.01)
    assert float(compiled['ours compiled / ours'].rstrip('x')) == \
        pytest.approx(ours_c / ours, rel=0.02, abs=0.01)

    (memory, ) = table(text, 'Peak training memory of the backbone (ours)')
    assert memory['input'] == '1x32x32'
    assert re.match(r'-?\d+%', memory['reduction'])

    (detector, ) = table(text, 'Cascade Mask R-CNN T: one training iteration')
    ours_s, mmdet_s = float(detector['ours (s)']), float(detector['mmdet (s)'])
    assert ours_s > 0 and mmdet_s > 0
    assert float(detector['ours, channels-last (s)']) > 0
    assert float(detector['mmdet/ours time'].rstrip('x')) == pytest.approx(
        mmdet_s / ours_s, rel=0.02, abs=0.01)

    targets = table(text, 'Targets')
    assert len(targets) == 4
    assert all(t['met'] in ('yes', 'no') for t in targets)


def test_round_ratios_and_the_target_count() -> None:
    benchmark = load_benchmark()
    # seconds per round; ours is faster in round 0 and slower in round 1
    times = {'ours': [1.0, 2.0], 'timm': [1.5, 1.0]}
    assert benchmark.round_ratio_range(times, 'timm') == (0.5, 1.5)

    def row(ratio: float, low: float, high: float):
        return benchmark.ThroughputRow(
            device='cpu', size=(1, 8, 8), dtype='fp32', layout='NCHW',
            pass_='forward', images_per_s={'ours': ratio, 'timm': 1.0},
            spread=0., round_ratios={'timm': (low, high)})

    rows = [row(1.1, 1.0, 1.2), row(0.95, 0.9, 1.05), row(0.8, 0.7, 0.9)]
    text, met = benchmark._target(rows, 'timm', 1.0)
    assert met == 'no'
    assert text.startswith('1 of 3 cells; lowest 0.80x')
    # only the third is below 1.0x in every round; the second is noise
    assert text.endswith('below 1.0x in every round: 1 of 3 cells')
    assert benchmark._ratio_cell(rows[1], 'timm') == '0.95x (0.90-1.05)'


def test_page_is_written_as_the_run_goes(tmp_path, monkeypatch) -> None:
    """A run stopped at a time limit keeps the rows measured before."""
    benchmark = load_benchmark()
    out = tmp_path / 'benchmarks.md'
    seen = {}

    def stop_here(*args, **kwargs):
        seen['page'] = out.read_text()
        raise KeyboardInterrupt  # as a run killed at its limit
    monkeypatch.setattr(benchmark, 'measure_memory', stop_here)
    with pytest.raises(KeyboardInterrupt):
        benchmark.main(['--arch', 'test', '--device', 'cpu', '--sizes',
                        '1x32x32', '--parts', 'throughput', 'memory',
                        '--repeats', '1', '--warmup', '0',
                        '--out', str(out)])
    page = seen['page']
    assert '**Incomplete**' in page
    # 1 size x (fp32, bf16) x 2 layouts x 2 passes, all before the stop
    assert len(table(page, 'Backbone throughput (images/s)')) == 8


def test_page_keeps_the_rows_of_a_part_stopped_midway(tmp_path,
                                                      monkeypatch) -> None:
    """Rows are written one by one, not only when their part ends."""
    benchmark = load_benchmark()
    out = tmp_path / 'benchmarks.md'
    timed = benchmark.interleaved_times
    seen = {}

    def stop_at_the_fourth_row(steps, settings):
        seen['calls'] = seen.get('calls', 0) + 1
        if seen['calls'] == 4:
            seen['page'] = out.read_text()
            raise KeyboardInterrupt  # as a run killed at its limit
        return timed(steps, settings)
    monkeypatch.setattr(benchmark, 'interleaved_times',
                        stop_at_the_fourth_row)
    with pytest.raises(KeyboardInterrupt):
        benchmark.main(['--arch', 'test', '--device', 'cpu', '--sizes',
                        '1x32x32', '--parts', 'throughput', '--repeats', '1',
                        '--warmup', '0', '--out', str(out)])
    assert '**Incomplete**' in seen['page']
    assert len(table(seen['page'], 'Backbone throughput (images/s)')) == 3
