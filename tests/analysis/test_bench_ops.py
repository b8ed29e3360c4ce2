"""The multi-scale deformable attention benchmark's measurements
(:mod:`convnext_dense.analysis.bench_ops`)."""
from __future__ import annotations

import convnext_dense  # noqa: F401  (installs the ops)
from convnext_dense.analysis import bench_ops


def test_saved_bytes_count_what_the_forward_keeps_beyond_its_inputs():
    inputs = bench_ops.msda_inputs(queries=50, batch=1)
    ours, reference = (bench_ops.msda_saved_bytes(
        bench_ops.msda_step(name, inputs)) for name in
        bench_ops.MSDA_CONTENDERS)
    # the op keeps only its inputs (mmcv's autograd function saves them)
    assert ours == 0
    # mmcv's function keeps its samples (heads x channels x queries x
    # levels x points, float32) and sampling grids (heads x queries x
    # levels x points x 2); with batch 1 its levels' maps are views of the
    # value
    samples, grids = 8 * 32 * 50 * 4 * 4 * 4, 8 * 50 * 4 * 4 * 2 * 4
    assert reference == samples + grids


def test_render_lists_every_case_and_contender():
    rows = {name: dict(seconds=0.5, spread=(0.4, 0.6), saved_bytes=2 ** 20,
                       peak_bytes=3 * 2 ** 20)
            for name in bench_ops.MSDA_CONTENDERS}
    page = bench_ops.render_msda(
        dict(rounds=3, timer='process CPU time', cases={
            'decoder': dict(queries=900, rows=rows)}), 'python x.py')
    assert 'Command: `python x.py`; 3 rounds' in page
    for name in bench_ops.MSDA_CONTENDERS:
        assert (f'| decoder (900 queries) | {name} | 0.500 (0.400-0.600) '
                '| 1.0 | 3.0 |') in page
