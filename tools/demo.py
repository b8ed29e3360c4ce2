"""Train and evaluate a small ConvNeXt model on synthetic data, on a CPU.

    python tools/demo.py det   # Cascade Mask R-CNN, toy COCO: box/mask AP
    python tools/demo.py dino  # DINO, toy COCO: box AP
    python tools/demo.py seg   # UperNet, toy ADE: mIoU
    python tools/demo.py seg-m2f   # Mask2Former, toy ADE: mIoU
    python tools/demo.py det --precision bf16   # trained and tested in bf16

Run from the repository root: data goes to data/toy_*, logs, checkpoint and
painted predictions to work_dirs/demo_*/. The logic lives in
:mod:`convnext_dense.apis.demo`.
"""
from __future__ import annotations

import argparse
import sys

from convnext_dense.apis.config_args import add_cfg_arguments
from convnext_dense.apis.demo import TASKS
from convnext_dense.engine.precision import add_precision_argument


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('task', choices=sorted(TASKS))
    parser.add_argument('--work-dir', help='default: work_dirs/demo_<task>')
    add_cfg_arguments(parser, 'train_cfg.max_epochs=1')
    add_precision_argument(parser)
    parser.add_argument('--verbose', action='store_true',
                        help='also print the config, environment and hook '
                        'order (always in the log file of the work dir)')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from mmengine.logging import print_log

    from convnext_dense.apis.config_args import CONFIG_ERRORS
    from convnext_dense.apis.demo import run_demo  # noqa: E402
    from convnext_dense.engine import PrecisionError
    from convnext_dense.fileio import OutputOverwritesInputError
    try:
        metrics = run_demo(args.task, args.work_dir, args.cfg_options,
                           allow_new_keys=args.cfg_new_keys,
                           verbose=args.verbose, precision=args.precision)
    except (*CONFIG_ERRORS, OutputOverwritesInputError,
            PrecisionError) as err:
        sys.exit(f'error: {err}')
    print_log('demo metrics: ' + ', '.join(
        f'{key}={value:.3f}' if isinstance(value, float) else f'{key}={value}'
        for key, value in metrics.items()), logger='current')
    return metrics


if __name__ == '__main__':
    main()
