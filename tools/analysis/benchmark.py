"""Benchmark ConvNeXt-T and Cascade Mask R-CNN T against their references.

    python tools/analysis/benchmark.py [--quick] [--device auto|cpu|cuda]
        [--arch tiny|test] [--parts throughput memory detector compiled]
        [--sizes BxHxW ...] [--dtypes fp32 bf16 fp16] [--threads N]
        [--repeats N] [--strict] [--out docs/benchmarks.md]

On the CPU, and on the GPU when one is present: backbone throughput of ours
against timm and mmpretrain, with_cp's peak-memory cut, one Cascade Mask
R-CNN T training iteration of our config against mmdet's, and (``--parts
... compiled``) the backbones under ``torch.compile``. The page is rewritten
after every row, so a run stopped at a time limit keeps what it measured.
``--help`` lists every option; the logic lives in
:mod:`convnext_dense.analysis.benchmark` (timing, speed, memory, report).
"""
from __future__ import annotations

import argparse
import os.path as osp
import shlex
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from convnext_dense.analysis.speed import ARCHS, DTYPES
    from convnext_dense.analysis.timing import parse_size
    from convnext_dense.paths import REPO_ROOT

    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true',
                        help='smaller inputs that finish in minutes on a '
                        'CPU (see device_settings)')
    parser.add_argument('--device', default='auto',
                        choices=['auto', 'cpu', 'cuda'],
                        help='auto: the CPU, and the GPU when present')
    parser.add_argument('--arch', default='tiny', choices=sorted(ARCHS),
                        help="'test' is the tiny unit-test arch, for smoke "
                        'runs')
    parser.add_argument('--parts', nargs='+',
                        default=['throughput', 'memory', 'detector'],
                        choices=['throughput', 'memory', 'detector',
                                 'compiled'],
                        help='compiled (not by default): forward throughput '
                        'of ours and timm under torch.compile')
    parser.add_argument('--compiled-sizes', nargs='+', type=parse_size,
                        help="the 'compiled' part's inputs (default: the "
                        '224x224 ones of --sizes)')
    parser.add_argument('--compile-backend', default='inductor',
                        help="torch.compile backend of the 'compiled' part "
                        "('eager': dynamo's capture alone, for smoke runs)")
    parser.add_argument('--sizes', nargs='+', type=parse_size,
                        help='fp32 throughput inputs, BATCHxHxW')
    parser.add_argument('--amp-sizes', nargs='+', type=parse_size,
                        help='autocast throughput inputs (default: --sizes)')
    parser.add_argument('--dtypes', nargs='+', choices=sorted(DTYPES),
                        help='throughput dtypes, measured in this order '
                        '(default: fp32 fp16 bf16 on a GPU, fp32 bf16 on a '
                        'CPU; fp16 and bf16 under autocast)')
    parser.add_argument('--mem-size', type=parse_size)
    parser.add_argument('--det-size', type=parse_size)
    parser.add_argument('--det-rois', type=int,
                        help='RoIs sampled per image in each cascade stage '
                        "(default: the configs' 512; 32 with --quick)")
    parser.add_argument('--repeats', type=int, default=5,
                        help='timed rounds per measurement (median)')
    parser.add_argument('--warmup', type=int,
                        help='untimed rounds first (default: 1 CPU, 3 GPU)')
    parser.add_argument('--inner', type=int,
                        help='calls per timing (default: 1 CPU, 10 GPU)')
    parser.add_argument('--threads', type=int,
                        help='torch CPU threads (default: torch\'s)')
    parser.add_argument('--out', default=osp.join(REPO_ROOT, 'docs',
                                                  'benchmarks.md'))
    parser.add_argument('--strict', action='store_true',
                        help='raise when a part fails instead of noting it '
                        'in the page')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from convnext_dense.analysis.benchmark import run_benchmark

    command = ' '.join(['python', 'tools/analysis/benchmark.py'] + [
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)])
    return run_benchmark(args, command)


if __name__ == '__main__':
    main()
