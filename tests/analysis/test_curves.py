"""Training curves (convnext_dense/analysis/curves.py,
tools/analysis/plot_logs.py).

A scalars.json written here with known values (two runs, the second a
resumption) is read back value for value and plotted.
"""
from __future__ import annotations

import json
import runpy
from pathlib import Path

import cv2
import pytest

from convnext_dense.analysis.curves import (find_scalar_files, plot_scalars,
                                            read_scalars)

REPO = Path(__file__).resolve().parents[2]


def write_runs(work_dir: Path) -> dict[str, tuple[list, list]]:
    """Two runs of an epoch-based training in mmengine's layout, the second
    resuming at iteration 5 (it re-logs iteration 6 with another value).
    Returns the expected series."""
    first = [
        {'lr': 0.1 * i, 'loss': 2.0 / i, 'time': 0.5, 'epoch': 1, 'iter': i,
         'step': i} for i in range(1, 7)
    ] + [{'coco/bbox_mAP': 0.25, 'time': 3.0, 'step': 1}]
    second = [
        {'lr': 0.01 * i, 'loss': 1.0 / i, 'time': 0.5, 'epoch': 2, 'iter': i,
         'step': i} for i in range(6, 9)
    ] + [{'coco/bbox_mAP': 0.5, 'time': 2.0, 'step': 2},
         {'flag': True, 'name': 'not a number', 'step': 2}]
    for run, lines in (('20260101_000000', first),
                       ('20260102_000000', second)):
        vis = work_dir / run / 'vis_data'
        vis.mkdir(parents=True)
        (vis / 'scalars.json').write_text(
            '\n'.join(json.dumps(line) for line in lines) + '\n\n')
    steps = list(range(1, 9))
    return {
        'lr': (steps, [0.1 * i for i in range(1, 6)] +
               [0.01 * i for i in range(6, 9)]),
        'loss': (steps, [2.0 / i for i in range(1, 6)] +
                 [1.0 / i for i in range(6, 9)]),
        'time': (steps, [0.5] * 8),
        'coco/bbox_mAP': ([1, 2], [0.25, 0.5]),
        'val/time': ([1, 2], [3.0, 2.0]),
    }


def test_read_scalars_equals_what_was_logged(tmp_path):
    expected = write_runs(tmp_path)
    series = read_scalars(str(tmp_path))
    assert list(series) == list(expected)
    for key, (steps, values) in expected.items():
        assert series[key].steps == steps, key
        assert series[key].values == pytest.approx(values), key
    assert series['loss'].unit == 'iteration'
    assert series['coco/bbox_mAP'].unit == 'epoch'
    # a run directory, its vis_data, or the file itself: that run only
    run = tmp_path / '20260101_000000'
    for path in (run, run / 'vis_data', run / 'vis_data' / 'scalars.json'):
        assert find_scalar_files(str(path)) == [
            str(run / 'vis_data' / 'scalars.json')]
        assert read_scalars(str(path))['loss'].steps == list(range(1, 7))


def test_iteration_based_validation_is_by_iteration(tmp_path):
    log = tmp_path / 'log.json'
    log.write_text('{"loss": 1.0, "lr": 0.1, "iter": 50, "step": 50}\n'
                   '{"mIoU": 40.5, "aAcc": 80.0, "step": 100}\n')
    series = read_scalars(str(log))
    assert series['mIoU'].unit == 'iteration'
    assert (series['mIoU'].steps, series['mIoU'].values) == ([100], [40.5])


def test_read_scalars_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match='no vis_data/scalars.json'):
        read_scalars(str(tmp_path))
    with pytest.raises(FileNotFoundError, match='no such file'):
        read_scalars(str(tmp_path / 'missing'))
    bad = tmp_path / 'bad.json'
    bad.write_text('{"loss": 1, "step": 1}\n{"loss": \n')
    with pytest.raises(ValueError, match=r'bad.json:2 is not a JSON object'):
        read_scalars(str(bad))


def test_plot_logs_tool(tmp_path):
    write_runs(tmp_path)
    main = runpy.run_path(
        str(REPO / 'tools' / 'analysis' / 'plot_logs.py'),
        run_name='plot_logs')['main']
    out = tmp_path / 'plots' / 'curves.png'
    assert main([str(tmp_path), '--keys', 'loss', 'lr', 'coco/bbox_mAP',
                 '--out', str(out)]) == str(out)
    image = cv2.imread(str(out))
    # three panels side by side, 5 x 3.5 inches each at 100 dpi
    assert image.shape == (350, 1500, 3)
    assert image.std() > 10  # curves and text, not a blank canvas
    with pytest.raises(SystemExit, match=r"not in the log: \['bbox_mAP'\]; "
                       r"logged keys: \['coco/bbox_mAP'"):
        main([str(tmp_path), '--keys', 'bbox_mAP', '--out', str(out)])


def test_plot_scalars_panels(tmp_path):
    write_runs(tmp_path)
    series = read_scalars(str(tmp_path))
    out = plot_scalars(series, ['loss', 'lr', 'time', 'coco/bbox_mAP'],
                       str(tmp_path / 'four.png'), title='four')
    # four panels: two rows of three columns
    assert cv2.imread(out).shape == (700, 1500, 3)
    with pytest.raises(ValueError, match='no keys'):
        plot_scalars(series, [], str(tmp_path / 'none.png'))
