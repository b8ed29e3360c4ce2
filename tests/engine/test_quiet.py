"""The terminal shows what a person reads; the log file keeps the dumps.

``tools/demo.py det`` used to print 864 lines, about 85 of them useful: the
config (591 lines), the hook order, the environment, pycocotools' prints,
deprecation warnings and spurious "bbox/polygon is out of bounds" warnings
for boxes touching the image border.
"""
from __future__ import annotations

import glob
import io
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip('mmdet')

from convnext_dense.engine.quiet import (det_local_visualizer_class,  # noqa
                                         quiet_console)
from helpers.forked import repo_env  # noqa: E402
from helpers.tool_runs import run_tool  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def draw_warnings(box: list[float]) -> list[str]:
    visualizer = det_local_visualizer_class()(name=f'quiet_test_{id(box)}')
    visualizer.set_image(np.zeros((128, 96, 3), np.uint8))  # H 128, W 96
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        visualizer.draw_bboxes(np.array([box]))
    return [str(w.message) for w in caught]


def test_the_visualizer_is_registered_when_mmdet_imports_first():
    # mmdet.apis -> mmcv.ops -> mmcv._ext imports the package while mmdet
    # is half imported; the visualizer of the configs must still build
    code = (
        'import mmdet.apis\n'
        'from mmdet.registry import VISUALIZERS\n'
        'v = VISUALIZERS.build(dict(type="convnext_dense.DetLocalVisualizer",'
        ' name="v"))\n'
        'from convnext_dense.engine.quiet import det_local_visualizer_class\n'
        'assert type(v) is det_local_visualizer_class(), type(v)\n')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_box_touching_the_border_does_not_warn():
    # a box over the last pixel column and row ends at x = W, y = H
    assert draw_warnings([10., 20., 96., 128.]) == []


def test_box_past_the_border_still_warns():
    messages = draw_warnings([10., 20., 97., 128.])
    assert any('bbox is out of bounds' in m for m in messages)


class StringFileHandler(logging.FileHandler):
    """A log file in memory: a FileHandler, as mmengine's log file is."""

    def __init__(self) -> None:
        logging.StreamHandler.__init__(self, io.StringIO())
        self.baseFilename = '<memory>'


def test_unprefixed_metric_notice_goes_to_the_log_file_only():
    # every UperNet run builds mmseg's IoUMetric, and mmengine logged a
    # WARNING on the terminal that it has no prefix
    from mmengine.logging import MMLogger
    from mmseg.evaluation import IoUMetric

    logger = MMLogger.get_instance('quiet_metric_test')
    terminal, log_file = logging.StreamHandler(io.StringIO()), \
        StringFileHandler()
    logger.handlers = [terminal, log_file]
    quiet_console(logger)
    try:
        IoUMetric()  # mmengine logs through the newest MMLogger
    finally:  # the later tests' 'current' logger is the one before
        MMLogger._instance_dict.pop('quiet_metric_test')
    assert 'The prefix is not set in metric class IoUMetric' in \
        log_file.stream.getvalue()
    assert terminal.stream.getvalue() == ''


def run_demo(tmp_path: Path, *options: str, fresh: bool = True
             ) -> list[str]:
    """The terminal of a short ``tools/demo.py det``: from a fresh
    interpreter, as a user starts it (what importing prints included), or
    forked from the suite's preloaded one."""
    args = [str(REPO / 'tools' / 'demo.py'), 'det',
            '--work-dir', str(tmp_path / 'work'), *options, '--cfg-new-keys',
            '--cfg-options', 'train_cfg.max_epochs=1',
            'train_dataloader.dataset.indices=8',
            'test_dataloader.dataset.indices=4']
    if fresh:
        done = subprocess.run([sys.executable, *args], cwd=tmp_path,
                              env=repo_env(), capture_output=True, text=True,
                              timeout=600)
    else:
        done = run_tool(args, str(tmp_path), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return (done.stdout + done.stderr).splitlines()


@pytest.mark.slow
def test_demo_terminal_is_short_and_the_log_file_has_the_dumps(tmp_path):
    lines = run_demo(tmp_path)
    text = '\n'.join(lines)
    assert len(lines) < 60, text
    for noise in ('Config:', 'System environment', 'Hooks will be executed',
                  'pkg_resources', 'out of bounds', 'loading annotations',
                  'Warning'):
        assert noise not in text
    for kept in ('Layer decay:', 'Epoch(train)', 'coco/bbox_mAP',
                 'painted predictions in'):
        assert kept in text
    [log] = glob.glob(str(tmp_path / 'work' / '*' / '*.log'))
    log_text = Path(log).read_text()
    for dumped in ('Config:', 'System environment', 'Hooks will be executed',
                   'Average Precision'):
        assert dumped in log_text
    # what --verbose adds is printed by the run, not by importing
    verbose = '\n'.join(run_demo(tmp_path, '--verbose', fresh=False))
    assert 'Config:' in verbose and 'Hooks will be executed' in verbose
