"""Convert a ConvNeXt checkpoint between the official, DINOv3, timm,
mmpretrain and Hugging Face key schemas.

    python tools/convert_checkpoint.py SRC DST [--to FORMAT] [--v2]
        [--prefix PREFIX] [--force]

The source format is detected. The work is done by
:func:`convnext_dense.checkpoint.backbone.convert_checkpoint`; this file only
parses arguments and prints a one-line summary.
"""
from __future__ import annotations

import argparse
import sys

from convnext_dense.checkpoint import FORMATS, convert_checkpoint


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='checkpoint to read (any supported '
                        'format, .pth/.pt/.bin/.safetensors)')
    parser.add_argument('dst', help='file to write (.safetensors: flat '
                        'safetensors file; otherwise torch.save)')
    parser.add_argument('--to', default='official', choices=FORMATS,
                        help='target key schema (default: official, '
                        "written as {'model': state_dict})")
    parser.add_argument('--v2', action='store_true', default=None,
                        help='write Hugging Face keys under convnextv2.* '
                        '(default: inferred from GRN weights)')
    parser.add_argument('--prefix', default=None,
                        help="model prefix of the target schema, e.g. '' "
                        "(a bare Hugging Face model), 'backbone.' (a UperNet's"
                        " backbone), 'model.' (a DINOv3 state_dict()); "
                        "default: the source's own when the schema is the "
                        "same, the Hub's spelling otherwise")
    parser.add_argument('--force', action='store_true',
                        help='overwrite DST if it exists')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        summary = convert_checkpoint(
            args.src, args.dst, args.to, v2=args.v2, force=args.force,
            prefix=args.prefix)
    except (OSError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(f"{summary['src']} ({summary['source_format']}) -> "
          f"{summary['dst']} ({summary['format']}): "
          f"{summary['tensors']} tensors written, "
          f"{len(summary['dropped'])} non-backbone keys dropped")
    return 0


if __name__ == '__main__':
    sys.exit(main())
