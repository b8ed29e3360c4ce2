"""Parameters and FLOPs (multiply-adds) of configs, against the paper.

    python tools/analysis/get_flops.py CONFIG [CONFIG ...] [--shape H W]
    python tools/analysis/get_flops.py --all [--out docs/model_analysis.md]

``--shape`` is height then width, as in tools/export_onnx.py; the table
prints width x height, as the paper does (1280x800). With ``--all``: every
model config in configs/ and its folders
(convnext_v2/, dinov3/, mask2former/, dino/; Mask R-CNN, Cascade Mask
R-CNN, UperNet, Mask2Former, DINO), at the paper's input sizes (1280x800
detection; 2048x512 / 2560x640 segmentation). Counted with mmengine's
counter on the CPU; each model is built and traced once, its convolutions
and matrix products not computed (the 46 configs: 5 min 14 s and 5.8 GB on
two cores). "FLOPs" here and in the paper are
multiply-adds. The logic lives in :mod:`convnext_dense.analysis.complexity`
(the counter), :mod:`convnext_dense.analysis.flops_forward` (what runs, per
kind of model) and :mod:`convnext_dense.analysis.complexity_report` (the
paper's numbers and the report).
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('configs', nargs='*', help='config files')
    parser.add_argument('--all', action='store_true',
                        help='every model config in configs/ and its '
                        'folders (about 5 minutes on two cores)')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help="input height and width (default: the paper's "
                        'size for the task)')
    parser.add_argument('--out', help='write the markdown report here, '
                        'e.g. docs/model_analysis.md')
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list:
    args = parse_args(argv)
    from mmengine.logging import print_log
    from mmengine.utils import ProgressBar

    from convnext_dense.analysis.complexity import config_complexity
    from convnext_dense.analysis.complexity_report import (analysis_document,
                                                           complexity_table,
                                                           model_configs)
    from convnext_dense.apis.config_args import (ConfigNotFoundError,
                                                 find_config)
    if args.all == bool(args.configs):
        sys.exit('error: name CONFIG files, or --all for every model config '
                 '(about 5 minutes on two cores)')
    try:
        configs = [find_config(c) for c in args.configs] or model_configs(
            osp.join(REPO, 'configs'))
    except ConfigNotFoundError as err:
        sys.exit(f'error: {err}')
    # the counter takes (width, height), as the paper writes sizes
    size = (args.shape[1], args.shape[0]) if args.shape else None
    rows = []
    bar = ProgressBar(len(configs))
    for config in configs:
        name = osp.splitext(osp.basename(config))[0]
        measured = config_complexity(config, size)
        rows.append((name, measured))
        bar.update()
        print_log(
            f'\n{name}: {measured.params / 1e6:.1f}M params, '
            f'{measured.flops / 1e9:.1f} GFLOPs at '
            f'{measured.input_size[0]}x{measured.input_size[1]}',
            logger='current')
    print_log('\n' + complexity_table(rows), logger='current')
    if args.out:
        command = 'python tools/analysis/get_flops.py' + ''.join(
            f' {c}' for c in args.configs) + (' --all' * args.all) + (
                f' --shape {args.shape[0]} {args.shape[1]}'
                if args.shape else '') + f' --out {args.out}'
        out_dir = osp.dirname(args.out)
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
        with open(args.out, 'w', encoding='utf-8') as f:
            f.write(analysis_document(rows, command))
        print_log(f'wrote {args.out}', logger='current')
    return rows


if __name__ == '__main__':
    main()
