"""CPU inference benchmark: PyTorch eager, channels-last (and compiled),
bf16 autocast, onnxruntime, OpenVINO; writes a markdown table.

    python tools/analysis/bench_inference.py [--quick] [--threads 1]
        [--rounds 5] [--cases backbone-batch1 backbone-batch8 upernet
        cascade train-upernet train-cascade] [--precisions fp32 bf16]
        [--openvino]
        [--compile] [--out docs/benchmarks_inference.md]

``--quick`` uses the tiny 'test' arch at small sizes (seconds; for
development and tests). The logic lives in
:mod:`convnext_dense.deploy.bench`.
"""
from __future__ import annotations

import argparse
import platform
import time


def parse_args(argv=None) -> argparse.Namespace:
    from convnext_dense.deploy.bench import CASES, TRAIN_CASES
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


def main(argv=None) -> str:
    args = parse_args(argv)
    import onnxruntime
    import torch

    from convnext_dense.deploy.bench import format_table, run
    start = time.time()
    rows, peak = run(args.cases, quick=args.quick, threads=args.threads,
                     rounds=args.rounds, compile=args.compile,
                     precisions=tuple(args.precisions) +
                     (('openvino', ) if args.openvino else ()))
    from convnext_dense.engine.precision import cpu_precision_flags
    flags = ', '.join(f'{k}={"yes" if v else "no"}'
                      for k, v in cpu_precision_flags().items())
    onednn = torch.backends.mkldnn.is_available() and next(
        (line.split('v', 1)[1].split()[0]
         for line in torch.__config__.show().splitlines()
         if 'MKL-DNN' in line or 'oneDNN' in line), 'unknown')
    command = ('python tools/analysis/bench_inference.py ' +
               ' '.join(f'{a}' for a in (argv or [])))
    page = '\n'.join([
        '# CPU inference benchmark', '',
        f'`{command.strip()}`: {time.time() - start:.0f} s; '
        f'{"quick (tiny models)" if args.quick else "real sizes"}, '
        f'{args.threads} thread(s), {args.rounds} alternating rounds; '
        f'torch {torch.__version__} (oneDNN {onednn}), onnxruntime '
        f'{onnxruntime.__version__}, {_openvino_version()}, '
        f'{platform.processor() or platform.machine()}, '
        f'{__import__("os").cpu_count()} cores (shared); CPU units: {flags} '
        '(bf16 rows without them measure emulation). Random weights: '
        'the timing does not depend on them.', '',
        format_table(rows, peak, args.threads), ''])
    if args.out:
        with open(args.out, 'w', encoding='utf-8') as f:
            f.write(page)
    print(page)
    return page


def _openvino_version() -> str:
    try:
        import openvino
    except ImportError:
        return 'no OpenVINO'
    return f'OpenVINO {openvino.__version__.split("-")[0]}'


if __name__ == '__main__':
    import sys
    main(sys.argv[1:])
