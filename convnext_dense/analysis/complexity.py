"""Parameters and FLOPs (multiply-adds) of the configs, against the paper.

Complexity is counted by mmengine's counter (:class:`mmengine.analysis.
FlopAnalyzer`, the fvcore counter ported to mmengine), which traces one
forward pass with ``torch.jit`` and adds up a per-operator formula. Its
"flops" are **multiply-adds** (one per MAC of a convolution or linear layer,
plus a few per element for norms, pooling and upsampling); the paper's
"FLOPs" are the same multiply-add counts, so the two compare directly.

What the forward pass covers follows the counts the paper reports (mmdet
2.x's and mmseg 0.x's ``get_flops`` tools on the released configs):

- detection, at 1280x800: backbone, FPN and the RPN head's convolutions on
  the image; every box head on 1000 proposals and every mask head on the
  first 100 of them, as mmdet 2.x's ``forward_dummy`` ran them. (mmdet 3.x's
  ``_forward`` takes however many proposals the RPN keeps, which depends on
  the weights, and runs the mask heads on all of them: up to 10x the mask
  cost.)
- segmentation, at the test scale of the crop size (2048x512 for 512
  crops, 2560x640 for 640): backbone and UPerHead, without the auxiliary
  head, which only trains. mmseg's ``EncoderDecoder._forward`` is exactly
  this.

Parameters are every parameter of the built model (auxiliary head
included).

A meta-device count (no memory, no compute) does not work with this
counter: ``torch.jit`` tracing passes symbolic sizes that the meta kernels
of convolution reject. Models are built and run on the CPU: measured on two
shared cores, T configs take about a minute each, the largest (UperNet XL
at 2560x640) 4.5 minutes and about 6 GB; all 16 configs 24 minutes.
"""
from __future__ import annotations

import gc
import glob
import os.path as osp
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import torch
import torch.nn as nn
from mmengine.config import Config

from convnext_dense.tasks import build_model, detect_task
from convnext_dense.models import ConvNeXt

# The paper's input size for detection FLOPs (width, height):
# docs/reference.md §4
DET_INPUT_SIZE = (1280, 800)
# mmdet 2.x forward_dummy: box heads on 1000 proposals, mask heads on 100
NUM_PROPOSALS = 1000
NUM_MASK_ROIS = 100


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
}

# ImageNet classification (docs/reference.md §1; 4.5 G at 224 for T)
PAPER_CLASSIFIER = {'tiny': PaperComplexity(28.6, 4.5, (224, 224))}


@dataclass
class Complexity:
    """What the counter measured for one model.

    Args:
        params: Number of parameters.
        flops: Multiply-adds of one forward pass (mmengine's "flops").
        input_size: (width, height) of the input image.
        by_operator: Multiply-adds per operator kind ('conv', 'linear',
            'layer_norm', ...).
    """
    params: int
    flops: int
    input_size: tuple[int, int]
    by_operator: dict[str, int] = field(default_factory=dict)


def count_complexity(model: nn.Module,
                     inputs: tuple,
                     input_size: tuple[int, int]) -> Complexity:
    """Count the parameters of ``model`` and the multiply-adds of
    ``model(*inputs)`` with mmengine's counter.

    Operators the counter has no formula for (element-wise additions,
    GELU, RoIAlign, ...) count zero, as in the paper's tools; their warnings
    are silenced.
    """
    from mmengine.analysis import FlopAnalyzer, parameter_count

    model.eval()
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    with torch.no_grad():
        flops = analyzer.total()
        by_operator = dict(analyzer.by_operator())
    return Complexity(
        params=parameter_count(model)[''],
        flops=int(flops),
        input_size=tuple(input_size),
        by_operator=by_operator)


class ConvNeXtClassifier(nn.Module):
    """ConvNeXt as the paper's ImageNet classifier: the backbone body, global
    average pooling, a final LayerNorm and a linear head.

    Used to check the counter against the paper's classification numbers;
    the body is :class:`convnext_dense.models.ConvNeXt` itself, only its
    dense-task output norms are left out.

    Args:
        arch: Any arch :class:`ConvNeXt` takes. Defaults to 'tiny'.
        num_classes: Classifier outputs. Defaults to 1000.
    """

    def __init__(self, arch: str | dict = 'tiny',
                 num_classes: int = 1000) -> None:
        super().__init__()
        self.backbone = ConvNeXt(arch, out_indices=(3, ))
        del self.backbone.norm3  # the classifier normalises after pooling
        dim = self.backbone.dims[-1]
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for downsample, stage in zip(self.backbone.downsample_layers,
                                     self.backbone.stages):
            x = stage(downsample(x))
        x = x.mean(dim=(-2, -1))  # (N, C)
        return self.head(self.norm(x))  # (N, num_classes)


def classifier_complexity(arch: str | dict = 'tiny',
                          image_size: int = 224) -> Complexity:
    """Parameters and multiply-adds of the ImageNet classifier of ``arch``
    at ``image_size`` x ``image_size``."""
    model = ConvNeXtClassifier(arch)
    inputs = (torch.zeros(1, 3, image_size, image_size), )
    return count_complexity(model, inputs, (image_size, image_size))


class DetectorFlopsForward(nn.Module):
    """The part of a two-stage detector whose cost the paper reports.

    Backbone, neck and the RPN head's convolutions run on the image; each
    box head on ``num_proposals`` fixed RoIs, each mask head on the first
    ``num_mask_rois`` of them (mmdet 2.x ``forward_dummy``). The RoIs are
    spread over the image and over box sizes so that every FPN level gets
    some; their values do not change any count.

    Args:
        detector: An mmdet two-stage detector (Mask R-CNN, Cascade Mask
            R-CNN) in eval mode.
        input_size: (width, height) of the image the RoIs lie in.
        num_proposals: RoIs through the box heads. Defaults to 1000.
        num_mask_rois: RoIs through the mask heads. Defaults to 100.
    """

    def __init__(self,
                 detector: nn.Module,
                 input_size: tuple[int, int],
                 num_proposals: int = NUM_PROPOSALS,
                 num_mask_rois: int = NUM_MASK_ROIS) -> None:
        super().__init__()
        self.detector = detector
        width, height = input_size
        # boxes of side 16 .. 512 px, centres on a pseudo-random walk
        index = torch.arange(num_proposals, dtype=torch.float32)
        side = 16 * 2**(5 * (index % 11) / 10)  # (num_proposals, )
        cx = (index * 0.618034 % 1) * width
        cy = (index * 0.414214 % 1) * height
        boxes = torch.stack([
            (cx - side / 2).clamp(0, width - 1),
            (cy - side / 2).clamp(0, height - 1),
            (cx + side / 2).clamp(1, width),
            (cy + side / 2).clamp(1, height)
        ], dim=1)
        # (num_proposals, 5): batch index 0, then x1, y1, x2, y2; a plain
        # attribute, not a buffer, so the trace takes it as a constant
        self.rois = torch.cat([torch.zeros(num_proposals, 1), boxes], dim=1)
        self.num_mask_rois = num_mask_rois

    def forward(self, img: torch.Tensor) -> tuple:
        from mmdet.models.roi_heads import CascadeRoIHead

        detector = self.detector
        feats = detector.extract_feat(img)
        outs = [detector.rpn_head(feats)]
        roi_head = detector.roi_head
        rois = self.rois.to(img.device)
        mask_rois = rois[:self.num_mask_rois]
        if isinstance(roi_head, CascadeRoIHead):
            # as forward_dummy: every stage on the same RoIs
            for stage in range(roi_head.num_stages):
                outs.append(roi_head._bbox_forward(stage, feats, rois))
            if roi_head.with_mask:
                for stage in range(roi_head.num_stages):
                    outs.append(
                        roi_head._mask_forward(stage, feats, mask_rois))
        else:
            outs.append(roi_head._bbox_forward(feats, rois))
            if roi_head.with_mask:
                outs.append(roi_head._mask_forward(feats, mask_rois))
        return tuple(_tensors(outs))


class SegmentorFlopsForward(nn.Module):
    """Backbone and decode head of an mmseg ``EncoderDecoder`` (its
    ``_forward``): what the paper's segmentation FLOPs cover."""

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        self.segmentor = segmentor

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.segmentor._forward(img)


class QueryHeadFlopsForward(nn.Module):
    """Backbone and Mask2Former head (mmseg's semantic or mmdet's instance
    one): pixel decoder and every transformer-decoder layer with its class
    and mask predictions, as both run them at test."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.head = query_head(model)

    def forward(self, img: torch.Tensor) -> tuple:
        # the heads' forward reads nothing from the data samples
        return tuple(_tensors(self.head(self.model.extract_feat(img), [])))


def query_head(model: nn.Module) -> nn.Module | None:
    """The model's Mask2Former head, or None."""
    head = getattr(model, 'panoptic_head', getattr(model, 'decode_head',
                                                   None))
    return head if hasattr(head, 'transformer_decoder') else None


def _tensors(obj) -> Iterable[torch.Tensor]:
    """Every tensor in a nest of tuples, lists and dicts (a jit trace must
    return tensors only)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _tensors(value)


def load_model_config(config: str | Config) -> Config:
    """A config file or object as a :class:`Config`."""
    if isinstance(config, Config):
        return config
    if not osp.isfile(config):
        raise FileNotFoundError(f'config file not found: {config}')
    return Config.fromfile(config)


def default_input_size(cfg: Config) -> tuple[int, int]:
    """The (width, height) the paper counts FLOPs at for this config:
    1280x800 for detection; the test pipeline's resize scale for
    segmentation (2048x512 for 512 crops, 2560x640 for 640)."""
    if detect_task(cfg) == 'det':
        return DET_INPUT_SIZE
    for transform in cfg.get('test_pipeline', []):
        if transform.get('type') == 'Resize' and 'scale' in transform:
            return tuple(transform['scale'])
    raise ValueError('the config has no Resize(scale=...) in test_pipeline; '
                     'pass the input size explicitly')


def config_complexity(config: str | Config,
                      input_size: tuple[int, int] | None = None,
                      num_proposals: int = NUM_PROPOSALS,
                      num_mask_rois: int = NUM_MASK_ROIS) -> Complexity:
    """Parameters and multiply-adds of a detection or segmentation config.

    Args:
        config: Config file or object.
        input_size: (width, height); None takes :func:`default_input_size`.
            Defaults to None.
        num_proposals: Detection: RoIs through each box head. Defaults to
            1000.
        num_mask_rois: Detection: RoIs through each mask head. Defaults to
            100.
    """
    cfg = load_model_config(config)
    input_size = tuple(input_size or default_input_size(cfg))
    model = build_model(cfg)
    width, height = input_size
    img = torch.zeros(1, 3, height, width)
    if query_head(model) is not None:
        wrapper = QueryHeadFlopsForward(model)
    elif detect_task(cfg) == 'det':
        wrapper = DetectorFlopsForward(model, input_size, num_proposals,
                                       num_mask_rois)
    else:
        wrapper = SegmentorFlopsForward(model)
    try:
        return count_complexity(wrapper, (img, ), input_size)
    finally:
        del wrapper, model, img
        gc.collect()


def _delta(ours: float, paper: float | None) -> str:
    if paper is None:
        return '–'
    return f'{100 * (ours - paper) / paper:+.1f}%'


def model_configs(config_dir: str) -> list[str]:
    """The model configs of ``config_dir`` and its folders (Mask R-CNN,
    Cascade Mask R-CNN, UperNet, Mask2Former; not ``_base_`` or ``demo``),
    in the order of :data:`PAPER_COMPLEXITY`, any others after them by
    name."""
    folders = [config_dir] + sorted(
        path for path in glob.glob(osp.join(config_dir, '*'))
        if osp.isdir(path) and osp.basename(path) not in ('_base_', 'demo'))
    files = [
        path for folder in folders
        for pattern in ('mask_rcnn_convnext_*.py',
                        'cascade_convnext_*.py', 'upernet_convnext_*.py',
                        'mask2former_convnext_*.py')
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
  per element for norms, pooling and upsampling; element-wise additions,
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
  class and mask predictions (deformable attention's sampling, a
  `grid_sample`, counts zero).
- Params: every parameter of the built model, auxiliary head included.
- Measured on the CPU with random weights (counts do not depend on values).
  The counter traces with `torch.jit`, which does not work on the meta
  device, so every model is built and run for real.
- Mask R-CNN S/B 1x: no published complexity ("–"); nor the ConvNeXt-V2
  (configs/convnext_v2/), DINOv3 (configs/dinov3/) and Mask2Former
  (configs/mask2former/) configs. A frozen DINOv3 config counts its frozen
  parameters too.
- ConvNeXt-T ImageNet classifier at 224 through the same counter:
  {_classifier_line()} (paper 28.6M, 4.5G).

{complexity_table(rows)}"""


def _classifier_line() -> str:
    measured = classifier_complexity('tiny', 224)
    return (f'{measured.params / 1e6:.2f}M params, '
            f'{measured.flops / 1e9:.2f} GFLOPs')
