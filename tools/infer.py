"""Paint a model's predictions on an image or a folder of images.

    python tools/infer.py CONFIG CHECKPOINT INPUT --out-dir DIR
        [--score-thr 0.3] [--opacity 0.5] [--device cpu] [--max-side 4096]
        [--precision {auto,fp32,bf16,fp16}] [--cfg-options KEY=VALUE ...]
    python tools/infer.py CONFIG FILE.onnx INPUT --out-dir DIR \\
        --backend {onnxruntime,openvino}

Detection configs paint boxes, masks, class names and scores; segmentation
configs a colour overlay with class names. The task comes from the config.
Every input ``INPUT/sub/name.jpg`` becomes ``DIR/sub/name.png`` at its own
size (``name.jpg.png`` where another input, ``name.png``, would also give
``name.png``). CONFIG and CHECKPOINT may both be a training work dir (the
config the Runner dumped there, the checkpoint ``last_checkpoint`` names),
e.g. after ``python tools/demo.py det``::

    python tools/infer.py work_dirs/demo_det work_dirs/demo_det \\
        data/toy_coco/val2017 --out-dir work_dirs/demo_det/infer

With ``--backend onnxruntime`` or ``openvino`` the second argument is a
graph written by ``tools/export_onnx.py`` (the whole model); the config
gives the test pipeline and, for segmentation, the sliding-window settings.
The PNGs are painted by the same visualizers.

The logic lives in :mod:`convnext_dense.apis.inference`.
"""
from __future__ import annotations

import argparse
import sys

from convnext_dense.apis.config_args import add_cfg_arguments
from convnext_dense.engine.precision import add_precision_argument


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file or training work dir')
    parser.add_argument('checkpoint',
                        help='checkpoint file or training work dir; the '
                        '.onnx file with --backend onnxruntime')
    parser.add_argument('input', help='image file or folder (recursive)')
    parser.add_argument('--out-dir', required=True,
                        help='where the painted PNGs go')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='detection: paint boxes scoring at least this')
    parser.add_argument('--opacity', type=float, default=0.5,
                        help='segmentation: weight of the colour overlay')
    parser.add_argument('--device', default=None,
                        help="e.g. 'cpu', 'cuda:0' (default: cuda:0 if "
                        'available, else cpu)')
    parser.add_argument('--max-side', type=int, default=4096,
                        help='scale larger images down to this longest side '
                        'before predicting (0: never)')
    add_precision_argument(parser)
    add_cfg_arguments(parser, 'model.test_cfg.rcnn.score_thr=0.05')
    parser.add_argument('--backend', default='pytorch',
                        choices=('pytorch', 'onnxruntime', 'openvino'),
                        help='run the PyTorch model or an exported ONNX '
                        'graph (CPU; openvino: pip install openvino)')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[str]:
    args = parse_args(argv)
    import torch

    from convnext_dense.apis.config_args import CONFIG_ERRORS
    from convnext_dense.apis.images import (OutputOverwritesInputError,
                                            UnreadableImageError)
    from convnext_dense.apis.inference import run_inference
    from convnext_dense.checkpoint import CHECKPOINT_ERRORS
    from convnext_dense.deploy.runtime import UnsupportedByBackendError
    from convnext_dense.engine import PrecisionError
    device = args.device or ('cuda:0' if torch.cuda.is_available() else
                             'cpu')
    try:
        return run_inference(
            args.config, args.checkpoint, args.input, args.out_dir,
            device=device, score_thr=args.score_thr, opacity=args.opacity,
            backend=args.backend, max_side=args.max_side or None,
            cfg_options=args.cfg_options, allow_new_keys=args.cfg_new_keys,
            precision=args.precision)
    except (FileNotFoundError, OutputOverwritesInputError, *CONFIG_ERRORS,
            PrecisionError, UnsupportedByBackendError,
            UnreadableImageError, *CHECKPOINT_ERRORS) as err:
        # the message says what is wrong; a traceback would bury it
        sys.exit(f'error: {err}')


if __name__ == '__main__':
    main()
