"""Running the command-line tools as a user runs them, for end-to-end tests.

Imported as ``helpers.tool_runs`` (pytest puts tests/ on ``sys.path``: the
test folders are packages).
"""
from __future__ import annotations

import os
import os.path as osp
import re
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def run_tool(args: list[str], cwd: str, timeout: float = 300
             ) -> subprocess.CompletedProcess:
    """``python ARGS`` in ``cwd`` with the repository importable."""
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep +
               os.environ.get('PYTHONPATH', ''))
    # one thread: on a shared 2-core machine a second intra-op thread
    # makes these small models many times slower, not faster
    env.setdefault('OMP_NUM_THREADS', '1')
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def metric(log: str, key: str) -> float:
    """The last value logged for ``key`` (e.g. 'coco/bbox_mAP', 'mIoU')."""
    values = re.findall(r'\b' + re.escape(key) + r':\s*(-?[\d.]+)', log)
    assert values, f'{key} not reported:\n{log[-3000:]}'
    return float(values[-1])
