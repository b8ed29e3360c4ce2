"""The CPU inference benchmark (convnext_dense/analysis/bench_inference.py),
on the tiny 'test' backbone: rows for every contender, outputs checked."""
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
