"""CPU inference benchmark: PyTorch eager, channels-last (and compiled),
bf16 autocast, onnxruntime, OpenVINO; writes a markdown table.

    python tools/analysis/bench_inference.py [--quick] [--threads 1]
        [--rounds 5] [--cases backbone-batch1 backbone-batch8 upernet
        cascade train-upernet train-cascade] [--precisions fp32 bf16]
        [--openvino]
        [--compile] [--out docs/benchmarks_inference.md]

``--quick`` uses the tiny 'test' arch at small sizes (seconds; for
development and tests). The logic lives in
:mod:`convnext_dense.analysis.bench_inference`.
"""
from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from convnext_dense.analysis.bench_inference import CASES, TRAIN_CASES
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--quick', action='store_true')
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--cases', nargs='+', default=list(CASES),
                        choices=CASES + TRAIN_CASES)
    parser.add_argument('--precisions', nargs='+', default=['fp32'],
                        choices=['fp32', 'bf16'],
                        help='bf16 adds bf16 autocast and OpenVINO bf16 '
                        'contenders (the training cases time both always)')
    parser.add_argument('--openvino', action='store_true',
                        help='OpenVINO contenders too (fp32; bf16 with '
                        '--precisions bf16); pip install openvino')
    parser.add_argument('--compile', action='store_true',
                        help='also time torch.compile (inductor)')
    parser.add_argument('--out', help='write the table to this file')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    from convnext_dense.analysis.bench_inference import benchmark_inference

    command = 'python tools/analysis/bench_inference.py ' + ' '.join(
        sys.argv[1:] if argv is None else argv)
    page = benchmark_inference(args.cases, quick=args.quick,
                               threads=args.threads, rounds=args.rounds,
                               compile=args.compile, out=args.out,
                               command=command,
                               precisions=tuple(args.precisions) +
                               (('openvino', ) if args.openvino else ()))
    print(page)
    return page



if __name__ == '__main__':
    main()
