"""Export a model, its backbone, or backbone + neck to ONNX.

    python tools/export_onnx.py CONFIG CHECKPOINT --out FILE.onnx
        [--part model|backbone|neck] [--shape H W] [--opset 17] [--static]
        [--fp16]

``--part model`` (the default) exports the whole test path: UperNet gives
whole-image logits at the input size (the sliding window of
``test_cfg.mode='slide'`` is run by the runtime); Mask R-CNN and Cascade
Mask R-CNN take one resized image and give boxes, scores, labels and masks
at the original size, with RPN, RoI heads, NMS and mask pasting in the
graph. Height and width are dynamic unless ``--static``. A model, part or
setting the graphs do not cover stops the export with a message naming it.
Run the file with ``tools/infer.py CONFIG FILE.onnx INPUT --out-dir DIR
--backend onnxruntime``. ``--fp16`` (with ``--part backbone`` or ``neck``)
computes in float16 between float32 inputs and outputs, keeping GRN and
LayerNorm statistics in float32.

The logic lives in :mod:`convnext_dense.apis.export` (building and loading)
and :mod:`convnext_dense.deploy.onnx_export` (the graphs).
"""
from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file or training work dir')
    parser.add_argument('checkpoint',
                        help='checkpoint file or training work dir')
    parser.add_argument('--out', required=True, help='the .onnx file')
    parser.add_argument('--part', default='model',
                        choices=('model', 'backbone', 'neck'),
                        help="'neck': backbone + neck (multi-scale features)")
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='size to trace at (default: the test resize, '
                        'at most 512; 224x224 for backbone/neck)')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--static', action='store_true',
                        help='fix batch, height and width to the traced ones')
    parser.add_argument('--fp16', action='store_true',
                        help='backbone/neck in float16 (float32 in and out)')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> str:
    args = parse_args(argv)
    from convnext_dense.apis.export import export_onnx
    from convnext_dense.checkpoint import CHECKPOINT_ERRORS
    from convnext_dense.deploy.graphs import UnsupportedModelError
    from convnext_dense.fileio import OutputOverwritesInputError
    try:
        out = export_onnx(args.config, args.checkpoint, args.out,
                          part=args.part,
                          shape=tuple(args.shape) if args.shape else None,
                          opset=args.opset, dynamic=not args.static,
                          fp16=args.fp16)
    except (FileNotFoundError, OutputOverwritesInputError,
            UnsupportedModelError, *CHECKPOINT_ERRORS) as err:
        sys.exit(f'error: {err}')
    print(f'wrote {out}')
    return out


if __name__ == '__main__':
    main()
