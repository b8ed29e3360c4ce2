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

The counter reads shapes, never values, so the trace need not compute the
products that hold nearly all the arithmetic: while it runs
(:func:`shapes_only`), the CPU kernels of convolution and matrix products
return zeros of their output's shape. A meta-device count would do no work
at all, but does not run: ``torch.jit`` tracing passes symbolic sizes that
the meta kernels of convolution reject. Measured on one core of the 2-core
machine, Cascade Mask R-CNN T at 1280x800 takes 8 s instead of 27 s, with
the same count to the last multiply-add (``tests/analysis``).
"""
from __future__ import annotations

import contextlib
import copy
import gc
import os.path as osp
import warnings
from dataclasses import dataclass, field
from typing import Iterator

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


def _convolution_output(input: torch.Tensor, weight: torch.Tensor, bias,
                        stride, padding, dilation, transposed: bool,
                        output_padding, groups: int, *cudnn_flags
                        ) -> torch.Tensor:
    """Zeros shaped as ``aten::_convolution``'s output (its schema's
    arguments; the tracer records this op for every convolution)."""
    batch, _, *spatial = input.shape
    kernel = weight.shape[2:]
    if transposed:  # weight: (C_in, C_out / groups, *kernel)
        channels = weight.shape[1] * groups
        out = [(size - 1) * s - 2 * p + d * (k - 1) + extra + 1
               for size, k, s, p, d, extra in zip(
                   spatial, kernel, stride, padding, dilation,
                   output_padding)]
    else:  # weight: (C_out, C_in / groups, *kernel)
        channels = weight.shape[0]
        out = [(size + 2 * p - d * (k - 1) - 1) // s + 1
               for size, k, s, p, d in zip(spatial, kernel, stride, padding,
                                           dilation)]
    return input.new_zeros([batch, channels, *out])


# aten op -> a CPU kernel that returns zeros of the op's output shape;
# linear layers, matmul and einsum reach these
_SHAPE_KERNELS = {
    '_convolution': _convolution_output,
    'mm': lambda a, b: a.new_zeros(a.shape[0], b.shape[1]),
    'addmm': lambda bias, a, b, **scales: a.new_zeros(a.shape[0],
                                                      b.shape[1]),
    'bmm': lambda a, b: a.new_zeros(a.shape[0], a.shape[1], b.shape[2]),
    'baddbmm': lambda bias, a, b, **scales: a.new_zeros(
        a.shape[0], a.shape[1], b.shape[2]),
}


@contextlib.contextmanager
def shapes_only() -> Iterator[None]:
    """While open, convolutions and matrix products on the CPU return zeros
    of their output's shape instead of computing.

    For a count, which reads shapes only: every value after the first
    convolution is a zero, so a model whose shapes depend on its values
    (non-maximum suppression, thresholds) must not be counted this way;
    the wrappers of :mod:`.flops_forward` fix those shapes. The kernels are
    the process's own, so any other thread computing on the CPU meanwhile
    gets zeros too; they are restored when the block ends, also on an
    error.
    """
    with torch.library._scoped_library('aten', 'IMPL') as library:
        with warnings.catch_warnings():
            # "Overriding a previously registered kernel": the point
            warnings.simplefilter('ignore', UserWarning)
            for name, kernel in _SHAPE_KERNELS.items():
                library.impl(name, kernel, 'CPU')
        yield


def count_complexity(model: nn.Module,
                     inputs: tuple,
                     input_size: tuple[int, int],
                     compute: bool = False) -> Complexity:
    """Count the parameters of ``model`` and the multiply-adds of
    ``model(*inputs)`` with mmengine's counter.

    Operators the counter has no formula for (element-wise additions,
    GELU, RoIAlign, ...) count zero, as in the paper's tools; their warnings
    are silenced.

    Args:
        model: The model; it is put in eval mode.
        inputs: The positional arguments of its forward.
        input_size: (width, height), recorded in the result.
        compute: Compute the convolutions and matrix products of the
            traced forward; by default they only make zeros of the right
            shape (:func:`shapes_only`), which counts the same, faster.
            Defaults to False.
    """
    from mmengine.analysis import FlopAnalyzer, parameter_count

    model.eval()
    analyzer = FlopAnalyzer(model, inputs)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    products = contextlib.nullcontext() if compute else shapes_only()
    with torch.no_grad(), products:
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
                      num_mask_rois: int = NUM_MASK_ROIS,
                      compute: bool = False) -> Complexity:
    """Parameters and multiply-adds of a detection or segmentation config.

    Args:
        config: Config file or object.
        input_size: (width, height); None takes :func:`default_input_size`.
            Defaults to None.
        num_proposals: Two-stage detectors: RoIs through each box head.
            Defaults to 1000.
        num_mask_rois: Two-stage detectors: RoIs through each mask head.
            Defaults to 100.
        compute: See :func:`count_complexity`. Defaults to False.
    """
    cfg = load_model_config(config)
    input_size = tuple(input_size or default_input_size(cfg))
    model = build_model(cfg)
    width, height = input_size
    img = torch.zeros(1, 3, height, width)
    wrapper = flops_forward(model, detect_task(cfg), input_size,
                            num_proposals, num_mask_rois)
    try:
        return count_complexity(wrapper, (img, ), input_size, compute)
    finally:
        del wrapper, model, img
        gc.collect()
