"""The CPU inference benchmark (convnext_dense/analysis/bench_inference.py),
on the tiny 'test' backbone: rows for every contender, outputs checked."""
import importlib.util

import pytest

pytest.importorskip('onnxruntime')

from convnext_dense.analysis.bench_inference import (  # noqa: E402
    format_table, run)


def test_quick_backbone_rows():
    rows, peak = run(['backbone-batch1'], quick=True, threads=1, rounds=2)
    assert [r.contender for r in rows] == ['eager', 'channels-last',
                                           'onnxruntime']
    assert all(len(r.ratios) == 2 for r in rows)
    assert rows[0].ratios == [1.0, 1.0]
    # every contender computes what eager does
    assert max(r.max_diff for r in rows) <= 1e-4
    assert peak > 0 and all(r.gflops > 0 for r in rows)
    table = format_table(rows, peak, 1)
    assert table.count('| backbone-batch1 |') == 3


@pytest.mark.slow  # ~55 s of CPU: two models trained and timed in bf16
def test_quick_precision_axis_and_training_rows():
    # OpenVINO is timed in a child process (test_openvino_contenders):
    # the suite's interpreter never loads it (tests/deploy/test_openvino.py)
    rows, _ = run(['backbone-batch1', 'train-upernet'], quick=True,
                  threads=1, rounds=1, precisions=('fp32', 'bf16'))
    by_name = {(r.case, r.contender): r for r in rows}
    contenders = [r.contender for r in rows if r.case == 'backbone-batch1']
    assert contenders[:4] == ['eager', 'channels-last', 'onnxruntime',
                              'bf16 autocast (channels-last)']
    # bf16 features of the tiny backbone: within a few bf16 ulps of fp32
    bf16 = by_name[('backbone-batch1', 'bf16 autocast (channels-last)')]
    assert 0 < bf16.max_diff <= 0.1
    train = [r for r in rows if r.case == 'train-upernet iteration']
    assert [r.contender for r in train] == ['eager', 'bf16 autocast']
    assert all(r.ms_per_image > 0 for r in train)
    # the first iteration's losses of the same weights and data
    assert train[1].max_diff <= 0.05 * 5  # loss ~ ln(150) x 1.4


@pytest.mark.slow  # ~11 s of CPU: a child interpreter loads OpenVINO
@pytest.mark.skipif(importlib.util.find_spec('openvino') is None,
                    reason='openvino is not installed')
def test_openvino_contenders():
    """OpenVINO fp32 and bf16 rows, in a child process (see above)."""
    import subprocess
    import sys
    code = (
        'from convnext_dense.analysis.bench_inference import run\n'
        "rows, _ = run(['backbone-batch1'], quick=True, threads=1, rounds=1,"
        " precisions=('fp32', 'bf16', 'openvino'))\n"
        'for r in rows:\n'
        "    print(repr(r.contender), r.max_diff)\n")
    done = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = dict(line.rsplit(' ', 1) for line in done.stdout.splitlines()
                if line.startswith("'"))
    assert "'openvino fp32'" in rows, done.stdout
    assert float(rows["'openvino fp32'"]) <= 1e-4
    assert any(name.startswith("'openvino bf16") for name in rows)
