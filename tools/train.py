"""Train a detector or a segmentor from a config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]]
        [--precision {auto,fp32,bf16,fp16}] [--amp]
        [--data-root PATH] [--cfg-options KEY=VALUE ...]
        [--launcher {none,pytorch,slurm,mpi}]

Detection and segmentation configs alike: their mmdet:: / mmseg:: bases set
``default_scope`` and their ``custom_imports`` register convnext_dense, so
this file only parses arguments and hands the config to the Runner.
Multi-GPU: tools/dist_train.sh; Slurm: tools/slurm_train.sh.
``--precision`` picks the optim wrapper for the machine
(:func:`convnext_dense.engine.apply_training_precision`), so a config with
``AmpOptimWrapper`` trains on a CPU too; ``--amp`` is ``--precision fp16``.
"""
from __future__ import annotations

import argparse
import os
import sys

from convnext_dense.apis.config_args import add_run_arguments

from convnext_dense.engine.precision import add_precision_argument


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='config file')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: work_dirs/<config name>)')
    parser.add_argument(
        '--resume', nargs='?', const='auto', metavar='CKPT',
        help='resume from CKPT, or without a value from the latest '
        'checkpoint in the work dir')
    add_precision_argument(parser, amp_alias=True)
    parser.add_argument(
        '--auto-scale-lr', action='store_true',
        help='scale lr by total batch size / auto_scale_lr.base_batch_size')
    add_run_arguments(parser,
                      'train_cfg.max_epochs=2 model.backbone.arch=small')
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from convnext_dense.apis.cli import load_config, train
    from convnext_dense.apis.config_args import CONFIG_ERRORS
    from convnext_dense.engine import PrecisionError, apply_training_precision
    from convnext_dense.fileio import OutputOverwritesInputError

    try:
        cfg = load_config(args.config, args.cfg_options, args.launcher,
                          args.work_dir, args.data_root, args.cfg_new_keys)
    except CONFIG_ERRORS as err:
        sys.exit(f'error: {err}')
    try:
        apply_training_precision(cfg, args.precision)
    except PrecisionError as err:
        sys.exit(f'error: {err}')
    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise ValueError('--auto-scale-lr needs auto_scale_lr.'
                             'base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    try:
        train(cfg, args.verbose)
    except OutputOverwritesInputError as err:  # raised before any work
        sys.exit(f'error: {err}')


if __name__ == '__main__':
    from convnext_dense.checkpoint import CHECKPOINT_ERRORS
    try:
        main()
    except CHECKPOINT_ERRORS as err:
        # --resume, load_from and init_cfg checkpoints: the message names
        # the file and what is wrong with it
        sys.exit(f'error: {err}')
