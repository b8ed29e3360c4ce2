"""Runs of the benchmark (convnext_dense/analysis/benchmark.py, the logic of
tools/analysis/benchmark.py) at tiny sizes.

Every part runs (throughput of the backbones, the with_cp memory
subprocesses, the Cascade Mask R-CNN configs) on the 'test' arch, and the
markdown page must carry the machine, the command, the absolute numbers
and ratios that agree with them. mmpretrain (the third backbone, and the
backbone of mmdet's config) is optional and not installed by default:
without it the page must leave its columns empty and say it was not
measured; its columns are checked only where it imports.
"""
from __future__ import annotations

import importlib.util
import re
import runpy
from pathlib import Path

import pytest

from convnext_dense.analysis import benchmark, timing

# long end-to-end runs: deselect with -m 'not slow'
pytestmark = pytest.mark.slow

pytest.importorskip('mmdet')

HAVE_MMPRETRAIN = importlib.util.find_spec('mmpretrain') is not None


def benchmark_tool(argv: list[str]) -> dict:
    """``python tools/analysis/benchmark.py ARGV``, in this process."""
    tool = Path(__file__).resolve().parents[2] / 'tools' / 'analysis' / \
        'benchmark.py'
    return runpy.run_path(str(tool), run_name='benchmark')['main'](argv)


def table(text: str, heading: str) -> list[dict[str, str]]:
    """The rows of the markdown table under ``## heading``, as dicts."""
    section = text.split(f'## {heading}\n', 1)[1].split('\n## ', 1)[0]
    lines = [line for line in section.splitlines() if line.startswith('|')]
    header = [cell.strip() for cell in lines[0].strip('|').split('|')]
    return [dict(zip(header, (cell.strip()
                              for cell in line.strip('|').split('|'))))
            for line in lines[2:]]


def test_quick_smoke_run_writes_the_table(tmp_path) -> None:
    out = tmp_path / 'benchmarks.md'
    argv = ['--quick', '--arch', 'test', '--device', 'cpu', '--strict',
            '--sizes', '1x32x32', '--amp-sizes', '1x32x32',
            '--mem-size', '1x32x32', '--det-size', '1x64x64',
            '--det-rois', '8', '--repeats', '1', '--warmup', '0',
            '--parts', 'throughput', 'compiled', 'memory', 'detector',
            '--compiled-sizes', '2x32x32', '--compile-backend', 'eager',
            '--out', str(out)]
    report = benchmark_tool(argv)
    text = out.read_text()

    assert 'python tools/analysis/benchmark.py ' + ' '.join(argv) in text
    assert 'torch threads' in text and 'load average' in text
    assert 'Incomplete' not in text

    rows = table(text, 'Backbone throughput (images/s)')
    # 1 size x (fp32, bf16) x 2 layouts x 2 passes
    assert len(rows) == len(report['throughput']) == 8
    assert {r['dtype'] for r in rows} == {'fp32', 'bf16'}
    assert {r['layout'] for r in rows} == {'NCHW', 'channels-last'}
    others = ['timm'] + (['mmpretrain'] if HAVE_MMPRETRAIN else [])
    for row in rows:
        ours = float(row['ours'])
        assert ours > 0
        # the ratio columns are ours over the other, from the same row,
        # then the range of the rounds' ratios (one round here: a point)
        for other in others:
            theirs = float(row[other])
            assert theirs > 0
            ratio, low, high = map(float, re.fullmatch(
                r'([\d.]+)x \(([\d.]+)-([\d.]+)\)',
                row[f'ours/{other}']).groups())
            assert ratio == pytest.approx(ours / theirs, rel=0.02, abs=0.01)
            assert low == pytest.approx(ratio, abs=0.011)
            assert high == pytest.approx(ratio, abs=0.011)
        if not HAVE_MMPRETRAIN:
            assert row['mmpretrain'] == row['ours/mmpretrain'] == '-'

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
    ours_s = float(detector['ours (s)'])
    assert ours_s > 0
    assert float(detector['ours, channels-last (s)']) > 0

    targets = table(text, 'Targets')
    assert all(t['met'] in ('yes', 'no') for t in targets
               if t['measured'] != 'not measured')
    notes = text.split('## Notes from this run\n', 1)[-1]
    if HAVE_MMPRETRAIN:
        mmdet_s = float(detector['mmdet (s)'])
        assert mmdet_s > 0
        assert float(detector['mmdet/ours time'].rstrip('x')) == \
            pytest.approx(mmdet_s / ours_s, rel=0.02, abs=0.01)
        assert len(targets) == 4
        assert 'mmpretrain is not installed' not in text
    else:
        assert detector['mmdet (s)'] == detector['mmdet/ours time'] == '-'
        # timm, mmpretrain (not measured), memory; no detector comparison
        assert len(targets) == 3
        assert targets[1]['measured'] == 'not measured'
        assert targets[1]['met'] == '-'
        assert ('mmpretrain is not installed' in notes
                and 'were not measured' in notes)


def test_page_is_written_as_the_run_goes(tmp_path, monkeypatch) -> None:
    """A run stopped at a time limit keeps the rows measured before."""
    out = tmp_path / 'benchmarks.md'
    seen = {}

    def stop_here(*args, **kwargs):
        seen['page'] = out.read_text()
        raise KeyboardInterrupt  # as a run killed at its limit
    monkeypatch.setattr(benchmark, 'measure_memory', stop_here)
    with pytest.raises(KeyboardInterrupt):
        benchmark_tool(['--arch', 'test', '--device', 'cpu', '--sizes',
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
    out = tmp_path / 'benchmarks.md'
    timed = timing.interleaved_times
    seen = {}

    def stop_at_the_fourth_row(steps, settings):
        seen['calls'] = seen.get('calls', 0) + 1
        if seen['calls'] == 4:
            seen['page'] = out.read_text()
            raise KeyboardInterrupt  # as a run killed at its limit
        return timed(steps, settings)
    monkeypatch.setattr(timing, 'interleaved_times',
                        stop_at_the_fourth_row)
    with pytest.raises(KeyboardInterrupt):
        benchmark_tool(['--arch', 'test', '--device', 'cpu', '--sizes',
                        '1x32x32', '--parts', 'throughput', '--repeats', '1',
                        '--warmup', '0', '--out', str(out)])
    assert '**Incomplete**' in seen['page']
    assert len(table(seen['page'], 'Backbone throughput (images/s)')) == 3
