"""Plot training curves of a work dir: loss, learning rate, AP / mIoU.

    python tools/analysis/plot_logs.py WORK_DIR [--keys loss lr coco/bbox_mAP]
        [--out curves.png] [--title TEXT]

WORK_DIR is a training work dir (all its runs, e.g. a training and its
resumption, in time order), one run's directory, or a scalars file
(``vis_data/scalars.json`` written by mmengine's LocalVisBackend, or any
``.json`` log in that one-object-per-line format). Training scalars are
plotted against the iteration; validation metrics against the epoch
(epoch-based loops) or the iteration. ``--list`` prints the logged keys.
The logic lives in :mod:`convnext_dense.analysis.curves`.
"""
from __future__ import annotations

import argparse
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work_dir',
                        help='work dir, run dir or scalars .json file')
    parser.add_argument('--keys', nargs='+', default=['loss', 'lr'],
                        help='logged scalars to plot, one panel each '
                        '(default: loss lr)')
    parser.add_argument('--out', default='curves.png',
                        help='image file to write (default: curves.png)')
    parser.add_argument('--title', help='figure title')
    parser.add_argument('--list', action='store_true',
                        help='print the logged keys and exit')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> str | None:
    args = parse_args(argv)
    from mmengine.logging import print_log

    from convnext_dense.analysis.curves import plot_scalars, read_scalars
    try:
        series = read_scalars(args.work_dir)
        if args.list:
            for key, data in series.items():
                print_log(f'{key}: {len(data.values)} values by {data.unit}',
                          logger='current')
            return None
        out = plot_scalars(series, args.keys, args.out, title=args.title)
    except (FileNotFoundError, KeyError, ValueError) as err:
        # a KeyError's str() is its message in quotes
        sys.exit(f'error: {err.args[0] if err.args else err}')
    print_log(f'wrote {out}', logger='current')
    return out


if __name__ == '__main__':
    main()
