"""Parameters and FLOPs (multiply-adds) of a model or a config.

Complexity is counted by mmengine's counter (:class:`mmengine.analysis.
FlopAnalyzer`, the fvcore counter ported to mmengine), which traces one
forward pass with ``torch.jit`` and adds up a per-operator formula. Its
"flops" are **multiply-adds** (one per MAC of a convolution or linear layer,
plus a few per element for norms, pooling, upsampling and ``grid_sample``);
the paper's "FLOPs" are the same multiply-add counts, so the two compare
directly.

What the forward pass of a config covers follows the counts the paper
reports (mmdet 2.x's and mmseg 0.x's ``get_flops`` tools on the released
configs); :mod:`.flops_forward` runs it, per kind of model. The paper's
numbers and the generated table are in :mod:`.complexity_report`.

Parameters are every parameter of the built model (auxiliary head
included).

A meta-device count (no memory, no compute) does not work with this
counter: ``torch.jit`` tracing passes symbolic sizes that the meta kernels
of convolution reject. Models are built and run on the CPU: measured on two
shared cores, T configs take about a minute each, the largest (UperNet XL
at 2560x640) 4.5 minutes and about 6 GB; all 16 configs 24 minutes.
"""
from __future__ import annotations

import copy
import gc
import os.path as osp
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from mmengine.config import Config

from convnext_dense.analysis.flops_forward import (NUM_MASK_ROIS,
                                                   NUM_PROPOSALS,
                                                   flops_forward)
from convnext_dense.models import ConvNeXt
from convnext_dense.tasks import build_model, detect_task

# The paper's input size for detection FLOPs (width, height):
# docs/reference.md §4
DET_INPUT_SIZE = (1280, 800)


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


def load_model_config(config: str | Config) -> Config:
    """A config file or object as a :class:`Config`; an object is copied
    (building a model edits some of its dicts in place, as DINO's bbox
    head)."""
    if isinstance(config, Config):
        return copy.deepcopy(config)
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
        num_proposals: Two-stage detectors: RoIs through each box head.
            Defaults to 1000.
        num_mask_rois: Two-stage detectors: RoIs through each mask head.
            Defaults to 100.
    """
    cfg = load_model_config(config)
    input_size = tuple(input_size or default_input_size(cfg))
    model = build_model(cfg)
    width, height = input_size
    img = torch.zeros(1, 3, height, width)
    wrapper = flops_forward(model, detect_task(cfg), input_size,
                            num_proposals, num_mask_rois)
    try:
        return count_complexity(wrapper, (img, ), input_size)
    finally:
        del wrapper, model, img
        gc.collect()
