"""The paper's parameters and FLOPs, and the generated comparison
(docs/model_analysis.md, written by ``tools/analysis/get_flops.py``).

:data:`PAPER_COMPLEXITY` has a row per model config (None where nothing is
published); :func:`model_configs` lists the configs in its order;
:func:`complexity_table` and :func:`analysis_document` write the measured
counts (:func:`.complexity.config_complexity`) next to the paper's.
"""
from __future__ import annotations

import glob
import os.path as osp
from dataclasses import dataclass
from typing import Sequence

from convnext_dense.analysis.complexity import (DET_INPUT_SIZE, Complexity,
                                                classifier_complexity)
from convnext_dense.analysis.flops_forward import NUM_MASK_ROIS, NUM_PROPOSALS


@dataclass(frozen=True)
class PaperComplexity:
    """Parameters (millions) and FLOPs (G multiply-adds) the paper reports,
    and the input size (width, height) of its FLOPs."""
    params_m: float
    gflops: float
    input_size: tuple[int, int]


# docs/reference.md §4-5 (COCO, then ADE20K), keyed by config file name, in
# the order of the generated table. The 1x Mask R-CNN T is the 3x model
# trained shorter; S and B 1x have no published complexity (None).
PAPER_COMPLEXITY: dict[str, PaperComplexity | None] = {
    'mask_rcnn_convnext_t': PaperComplexity(48, 262, DET_INPUT_SIZE),
    'mask_rcnn_convnext_t_1x': PaperComplexity(48, 262, DET_INPUT_SIZE),
    'mask_rcnn_convnext_s_1x': None,
    'mask_rcnn_convnext_b_1x': None,
    'cascade_convnext_t': PaperComplexity(86, 741, DET_INPUT_SIZE),
    'cascade_convnext_s': PaperComplexity(108, 827, DET_INPUT_SIZE),
    'cascade_convnext_b': PaperComplexity(146, 964, DET_INPUT_SIZE),
    'cascade_convnext_b_in22k': PaperComplexity(146, 964, DET_INPUT_SIZE),
    'cascade_convnext_l_in22k': PaperComplexity(255, 1354, DET_INPUT_SIZE),
    'cascade_convnext_xl_in22k': PaperComplexity(407, 1898, DET_INPUT_SIZE),
    'upernet_convnext_t': PaperComplexity(60, 939, (2048, 512)),
    'upernet_convnext_s': PaperComplexity(82, 1027, (2048, 512)),
    'upernet_convnext_b': PaperComplexity(122, 1170, (2048, 512)),
    'upernet_convnext_b_in22k_640': PaperComplexity(122, 1828, (2560, 640)),
    'upernet_convnext_l_in22k_640': PaperComplexity(235, 2458, (2560, 640)),
    'upernet_convnext_xl_in22k_640': PaperComplexity(391, 3335, (2560, 640)),
    # configs/convnext_v2/, configs/dinov3/: no published complexity of
    # these detectors and segmentors (the V2 and DINOv3 papers report other
    # heads or sizes)
    'mask_rcnn_convnext_v2_t_lsj_3x': None,
    'mask_rcnn_convnext_v2_b_lsj_3x': None,
    'upernet_convnext_v2_t': None,
    'upernet_convnext_v2_b': None,
    'cascade_convnext_dinov3_t': None,
    'cascade_convnext_dinov3_t_frozen': None,
    'cascade_convnext_dinov3_b': None,
    'cascade_convnext_dinov3_b_frozen': None,
    'upernet_convnext_dinov3_t': None,
    'upernet_convnext_dinov3_t_frozen': None,
    'upernet_convnext_dinov3_b': None,
    'upernet_convnext_dinov3_b_frozen': None,
    # configs/mask2former/: no published Mask2Former-ConvNeXt complexity
    **{f'mask2former_convnext_{name}': None for name in (
        't_ade20k_512', 's_ade20k_512', 'b_ade20k_512',
        'b_in22k_ade20k_640', 'l_in22k_ade20k_640', 'v2_t_ade20k_512',
        'v2_b_ade20k_512', 'dinov3_t_ade20k_512', 'dinov3_b_ade20k_512',
        't_coco_instance', 's_coco_instance', 'b_coco_instance')},
    # configs/dino/: no published DINO-ConvNeXt complexity
    **{f'dino_convnext_{name}_4scale_12e': None for name in (
        't_in22k_384', 's_in22k_384', 'b_in22k_384', 'l_in22k_384',
        'dinov3_t', 'dinov3_b')},
}

# ImageNet classification (docs/reference.md §1; 4.5 G at 224 for T)
PAPER_CLASSIFIER = {'tiny': PaperComplexity(28.6, 4.5, (224, 224))}



def _delta(ours: float, paper: float | None) -> str:
    if paper is None:
        return '–'
    return f'{100 * (ours - paper) / paper:+.1f}%'


def model_configs(config_dir: str) -> list[str]:
    """The model configs of ``config_dir`` and its folders (Mask R-CNN,
    Cascade Mask R-CNN, UperNet, Mask2Former, DINO; not ``_base_`` or
    ``demo``),
    in the order of :data:`PAPER_COMPLEXITY`, any others after them by
    name."""
    folders = [config_dir] + sorted(
        path for path in glob.glob(osp.join(config_dir, '*'))
        if osp.isdir(path) and osp.basename(path) not in ('_base_', 'demo'))
    files = [
        path for folder in folders
        for pattern in ('mask_rcnn_convnext_*.py',
                        'cascade_convnext_*.py', 'upernet_convnext_*.py',
                        'mask2former_convnext_*.py', 'dino_convnext_*.py')
        for path in glob.glob(osp.join(folder, pattern))
    ]
    order = {name: i for i, name in enumerate(PAPER_COMPLEXITY)}

    def key(path: str) -> tuple[int, str]:
        name = osp.splitext(osp.basename(path))[0]
        return order.get(name, len(order)), name

    return sorted(files, key=key)


def complexity_table(rows: Sequence[tuple[str, Complexity]]) -> str:
    """A markdown table of measured and published complexity.

    Args:
        rows: (config name, measured complexity) pairs; the paper's numbers
            come from :data:`PAPER_COMPLEXITY` by name, shown only for a
            measurement at the paper's input size.
    """
    lines = [
        '| config | input (WxH) | params (M) | paper params (M) | Δ params '
        '| GFLOPs | paper GFLOPs | Δ FLOPs |',
        '|---|---|---|---|---|---|---|---|',
    ]
    for name, measured in rows:
        paper = PAPER_COMPLEXITY.get(name)  # None: not published
        params_m = measured.params / 1e6
        gflops = measured.flops / 1e9
        width, height = measured.input_size
        if paper is not None and tuple(paper.input_size) != (width, height):
            paper = None  # counted at another size: nothing to compare
        lines.append(
            f'| {name} | {width}x{height} | {params_m:.1f} | '
            f'{paper.params_m if paper else "–"} | '
            f'{_delta(params_m, paper and paper.params_m)} | '
            f'{gflops:.0f} | {paper.gflops if paper else "–"} | '
            f'{_delta(gflops, paper and paper.gflops)} |')
    return '\n'.join(lines) + '\n'


def analysis_document(rows: Sequence[tuple[str, Complexity]],
                      command: str) -> str:
    """docs/model_analysis.md: the table and how it was measured."""
    return f"""# Model complexity: parameters and FLOPs

Generated by `{command}`; do not edit by hand.

- **FLOPs are multiply-adds (MACs)**, as in the paper: mmengine's counter
  (`mmengine.analysis.FlopAnalyzer`, a port of fvcore's) names them "flops"
  and counts one per multiply-add of a convolution or linear layer, plus a few
  per element for norms, pooling and upsampling (and 4 per value that
  deformable attention samples with `grid_sample`); element-wise additions,
  activations and RoIAlign count zero. GFLOPs = 1e9 multiply-adds.
- Inputs: 1280x800 for detection, the test scale of the crop for
  segmentation (2048x512 for 512 crops, 2560x640 for 640), one image, as the
  paper's numbers (docs/reference.md §4-5).
- What runs, as the paper's tools counted it (mmdet 2.x / mmseg 0.x
  `get_flops`): detection = backbone + FPN + RPN head convolutions on the
  image, each cascade stage's box head on the same {NUM_PROPOSALS} proposals,
  each mask head on the first {NUM_MASK_ROIS} (mmdet 2.x `forward_dummy`);
  segmentation = backbone + UPerHead (the auxiliary FCN head only trains);
  Mask2Former = backbone + pixel decoder + all 9 decoder layers with their
  class and mask predictions; DINO = mmdet's `_forward` at test: backbone +
  neck + 6 encoder layers + query selection on every encoder token + 6
  decoder layers on the 900 queries + the class and box branches of every
  decoder layer (the denoising queries only train).
- Params: every parameter of the built model, auxiliary head included.
- Measured on the CPU with random weights (counts do not depend on values).
  The counter traces with `torch.jit`, which does not work on the meta
  device, so every model is built and traced on the CPU; while it traces,
  convolutions and matrix products return zeros of their output's shape
  instead of computing (`complexity.shapes_only`), which gives the computed
  forward's counts to the last multiply-add (tests/analysis).
- Mask R-CNN S/B 1x: no published complexity ("–"); nor the ConvNeXt-V2
  (configs/convnext_v2/), DINOv3 (configs/dinov3/), Mask2Former
  (configs/mask2former/) and DINO (configs/dino/) configs. A frozen DINOv3
  config counts its frozen parameters too.
- ConvNeXt-T ImageNet classifier at 224 through the same counter:
  {_classifier_line()} (paper 28.6M, 4.5G).

{complexity_table(rows)}"""


def _classifier_line() -> str:
    measured = classifier_complexity('tiny', 224)
    return (f'{measured.params / 1e6:.2f}M params, '
            f'{measured.flops / 1e9:.2f} GFLOPs')
