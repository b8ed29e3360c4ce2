"""Cascade Mask R-CNN T training iteration and inference on convnext_dense.ops
(the default install) against mmcv's compiled ops, alternating worker
processes; writes docs/benchmarks_ops.md.

    python tools/analysis/bench_ops.py \
        --compiled-python /path/to/venv/bin/python

With ``--msda``: multi-scale deformable attention of convnext_dense.ops
against mmcv's pure-PyTorch function on the CPU (forward + backward, time
and memory), printed as a table.

The compiled environment comes from ``CONVNEXT_DENSE_VENV=/path/to/venv bash
tools/install.sh --mmcv-ops``. The logic lives in
:mod:`convnext_dense.analysis.bench_ops`.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--compiled-python', help='python of an environment '
                        'made by tools/install.sh --mmcv-ops')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--iters', type=int, default=2)
    parser.add_argument('--size', type=int, default=320)
    parser.add_argument('--rois', type=int, default=64)
    parser.add_argument('--out', help='the page to write (default: '
                        'docs/benchmarks_ops.md)')
    parser.add_argument('--msda', action='store_true',
                        help='time multi-scale deformable attention instead '
                        '(--rounds rounds)')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    from convnext_dense.analysis.bench_ops import (benchmark_msda,
                                                   benchmark_ops, render_msda)

    command = 'python tools/analysis/bench_ops.py ' + ' '.join(
        sys.argv[1:] if argv is None else argv)
    if args.msda:
        table = render_msda(benchmark_msda(args.rounds), command)
        print(table)
        return table
    kwargs = dict(out=args.out) if args.out else {}
    out = benchmark_ops(args.compiled_python, args.rounds, args.iters,
                        args.size, args.rois, command=command, **kwargs)
    print(f'wrote {out}')
    return out


if __name__ == '__main__':
    main()
