"""Running the command-line tools as a user runs them, for end-to-end tests.

Imported as ``helpers.tool_runs`` (pytest puts tests/ on ``sys.path``: the
test folders are packages).
"""
from __future__ import annotations

import os.path as osp
import re
import subprocess

from .forked import REPO, repo_env, run_python


def run_tool(args: list[str], cwd: str, timeout: float = 300
             ) -> subprocess.CompletedProcess:
    """``python ARGS`` in ``cwd`` with the repository importable, forked
    from the preloaded interpreter (:mod:`helpers.forked`)."""
    return run_python(args, cwd, repo_env(), timeout)


def metric(log: str, key: str) -> float:
    """The last value logged for ``key`` (e.g. 'coco/bbox_mAP', 'mIoU')."""
    values = re.findall(r'\b' + re.escape(key) + r':\s*(-?[\d.]+)', log)
    assert values, f'{key} not reported:\n{log[-3000:]}'
    return float(values[-1])


def metrics_by_precision(config: str, checkpoint: str, cwd: str,
                         keys: list[str], extra: tuple[str, ...] = (),
                         precisions: tuple[str, ...] = ('fp32', 'bf16')
                         ) -> dict[str, dict[str, float]]:
    """``tools/test.py CONFIG CHECKPOINT --precision P`` for each precision:
    ``{precision: {key: value}}`` of the metrics it logged."""
    results = {}
    for precision in precisions:
        result = run_tool([
            osp.join(REPO, 'tools', 'test.py'), config, checkpoint,
            '--work-dir', osp.join(cwd, f'test_{precision}'),
            '--precision', precision, *extra], cwd, timeout=1800)
        log = result.stdout + result.stderr
        assert result.returncode == 0, log[-5000:]
        assert f'precision {precision} on cpu' in log
        results[precision] = {key: metric(log, key) for key in keys}
    return results
