"""Cascade Mask R-CNN T training iteration and inference on convnext_dense.ops
(the default install) against mmcv's compiled ops, alternating worker
processes; writes docs/benchmarks_ops.md.

    python tools/analysis/bench_ops.py \
        --compiled-python /path/to/venv/bin/python

The compiled environment comes from ``CONVNEXT_DENSE_VENV=/path/to/venv bash
tools/install.sh --mmcv-ops``. The logic is :mod:`convnext_dense.ops.bench`.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))

from convnext_dense.ops.bench import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
