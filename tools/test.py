"""Evaluate a checkpoint on a config's test set.

    python tools/test.py CONFIG CHECKPOINT [--device cpu] [--work-dir DIR]
        [--out FILE.pkl]
        [--show-dir DIR] [--show] [--tta] [--allow-partial]
        [--precision {auto,fp32,bf16,fp16}]
        [--data-root PATH] [--cfg-options KEY=VALUE ...]
        [--launcher {none,pytorch,slurm,mpi}]

Detection configs report COCO box/mask AP (CocoMetric), segmentation
configs mIoU; multi-GPU: tools/dist_test.sh. A checkpoint that does not fit
the config's model is refused, naming the missing, unexpected and
mis-shaped tensors, unless --allow-partial. CONFIG and CHECKPOINT may both
be a training work dir, as in tools/infer.py. ``--precision`` runs the model
under autocast (:func:`convnext_dense.engine.apply_test_precision`).
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

from convnext_dense.apis.config_args import add_run_arguments

from convnext_dense.engine.precision import add_precision_argument


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='config file or training work dir')
    parser.add_argument('checkpoint',
                        help='checkpoint file or training work dir')
    parser.add_argument('--device', default=None,
                        help="'cpu', 'cuda' or 'cuda:N' (default: cuda if "
                        'available, else cpu)')
    parser.add_argument('--work-dir', help='where the metrics log goes '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--out', metavar='FILE.pkl',
                        help='also pickle every prediction to this file')
    parser.add_argument(
        '--show-dir', help='save painted predictions here')
    parser.add_argument('--show', action='store_true',
                        help='open a window per painted prediction')
    parser.add_argument('--wait-time', type=float, default=2.,
                        help='seconds each --show window stays open')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation: the config's "
                        'tta_model and tta_pipeline')
    parser.add_argument(
        '--allow-partial', action='store_true',
        help='evaluate even if the checkpoint does not fit the model: '
        'tensors that fit are loaded, the others stay as initialised')
    add_precision_argument(parser)
    add_run_arguments(parser, 'model.test_cfg.rcnn.score_thr=0.05')
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    from convnext_dense.checkpoint import CHECKPOINT_ERRORS
    from convnext_dense.engine import (PrecisionError, apply_test_precision,
                                       check_annotations, check_dataset_paths)
    from convnext_dense.apis.cli import (build_runner, dump_predictions,
                                         enable_tta, enable_visualization,
                                         load_config,
                                         require_matching_checkpoint)

    from convnext_dense.apis.cli import flatten_seg_pictures, select_device
    from convnext_dense.apis.config_args import CONFIG_ERRORS
    from convnext_dense.apis.model_files import resolve_checkpoint
    from convnext_dense.apis.outputs import (OutputOverwritesInputError,
                                             check_run_outputs)
    from convnext_dense.tasks import detect_task
    try:
        select_device(args.device)
        cfg = load_config(args.config, args.cfg_options, args.launcher,
                          args.work_dir, args.data_root, args.cfg_new_keys)
        # a URL goes to the Runner's loader (downloaded to the cache)
        cfg.load_from = args.checkpoint if '://' in args.checkpoint else \
            resolve_checkpoint(args.checkpoint)
        # before anything is built or written
        check_run_outputs(cfg, ('test', ), [
            ('--show-dir', args.show_dir), ('--out', args.out),
            ('--work-dir', args.work_dir)])
    except (*CONFIG_ERRORS, OutputOverwritesInputError, FileNotFoundError,
            ValueError) as err:
        sys.exit(f'error: {err}')
    require_matching_checkpoint(cfg, args.allow_partial)
    # a missing or wrong data path is named with its config key up front
    check_dataset_paths(cfg, ('test', ))
    check_annotations(cfg, ('test', ))
    if args.show or args.show_dir:
        enable_visualization(cfg, args.show_dir, args.show, args.wait_time)
    if args.tta:
        enable_tta(cfg)
    try:
        apply_test_precision(cfg, args.precision)
    except PrecisionError as err:
        sys.exit(f'error: {err}')
    runner = build_runner(cfg, training=False, verbose=args.verbose)
    if args.out:
        dump_predictions(runner, args.out)
    try:
        metrics = runner.test()
    except CHECKPOINT_ERRORS as err:
        sys.exit(f'error: {err}')  # the message names file and tensors
    if args.show_dir and detect_task(cfg) == 'seg':
        flatten_seg_pictures(osp.abspath(args.show_dir))
    return metrics


if __name__ == '__main__':
    main()
