"""The DINO CPU demo (`tools/demo.py dino`, run once per session in the
background: tests/helpers/demos.py) learns: from scratch, in the schedule of
configs/demo/dino_convnext_demo.py, it reaches the box AP floors below."""
from __future__ import annotations

import os
import os.path as osp

import pytest

pytest.importorskip('mmdet')

from helpers.tool_runs import metric  # noqa: E402

# measured 0.015 and 0.061 (configs/demo/dino_convnext_demo.py); each floor
# is about half of it, a margin for other machines' arithmetic. Untrained
# (`tools/demo.py dino --cfg-options train_cfg.max_epochs=0`): 0.000, 0.000
FLOORS = {'coco/bbox_mAP': 0.008, 'coco/bbox_mAP_50': 0.03}


@pytest.mark.slow
@pytest.mark.demo('dino')
def test_dino_demo_learns(demo_run):
    log = demo_run.log
    assert demo_run.returncode == 0, log[-5000:]
    for key, floor in FLOORS.items():
        assert metric(log, key) >= floor, (key, metric(log, key))
    painted = os.listdir(osp.join(demo_run.cwd, 'work_dirs', 'demo_dino',
                                  'vis'))
    assert len(painted) == 60
