"""dev/gpu_check.sh, dry-run on the CPU.

The GPU machine of a session is lent for minutes, so the script that spends
them must not fail on a typo: its dry run goes through the same steps (the
environment report, ``pytest -m gpu``, the demo models trained and tested
in reduced precision, the benchmark with every part, the page) at toy sizes
on the CPU, with this environment's own packages.
"""
from __future__ import annotations

import importlib.util
import os
import os.path as osp
import subprocess
import sys

import pytest

# long end-to-end runs: deselect with -m 'not slow'
pytestmark = pytest.mark.slow

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_dry_run_writes_the_page(tmp_path) -> None:
    out = tmp_path / 'gpu_check'
    env = dict(os.environ, GPU_CHECK_DRY_RUN='1', OMP_NUM_THREADS='1',
               PYTHON=sys.executable)
    done = subprocess.run(
        ['bash', osp.join(REPO, 'dev', 'gpu_check.sh'), '', str(out)],
        env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    environment = (out / 'environment.txt').read_text()
    assert 'no GPU (dry run)' in environment
    assert 'mmcv ops from: torchvision' in environment
    # mmpretrain is optional: the run goes on without it, and says so
    if importlib.util.find_spec('mmpretrain') is None:
        assert 'mmpretrain not installed' in environment
    # the demo models trained and tested in bf16 (on the GPU: and fp16)
    summary = (out / 'precision' / 'summary.txt').read_text()
    for task in ('seg', 'det'):
        assert f'[{task} bf16 rc=0] ' in summary
    assert summary.count('precision bf16 on cpu') == 2
    assert summary.count('demo metrics') == 2
    # every GPU test was collected (and skipped here: no CUDA): 5 of the
    # fast paths, 6 of multi-scale deformable attention
    assert '11 skipped' in (out / 'pytest_gpu.log').read_text()
    page = (out / 'benchmarks_gpu.md').read_text()
    assert ('--dtypes bf16 fp16 fp32 --parts throughput memory detector '
            'compiled --strict') in page
    assert 'convnext_dense.ops' in page
    assert 'Incomplete' not in page
    for dtype in ('bf16', 'fp16', 'fp32'):
        assert f'| {dtype} |' in page
    for heading in ('Backbone throughput', 'Compiled backbones',
                    'Peak training memory',
                    'Cascade Mask R-CNN T: one training iteration'):
        assert f'## {heading}' in page
