"""torchvision stand-ins for the few compiled mmcv ops a Cascade Mask R-CNN
training step calls, for benchmarking on a machine where mmcv cannot be built.

A GPU machine without network access has torch and torchvision but no way to
compile mmcv 2.1.0's CUDA ops in the time it is lent (tools/gpu_check.sh).
There, mmcv-lite (mmcv's pure-Python build) is installed and this module
takes the place of its missing extension ``mmcv._ext``:

- ``roi_align_forward`` / ``roi_align_backward`` (average pooling): the RoI
  box and mask feature extractors, and mmdet's mask targets;
- ``nms`` (offset 0): the RPN's and the RoI heads' batched NMS.

Both compute what mmcv's kernels compute (the same bilinear sampling and
adaptive sampling grid; the same greedy suppression);
``tests/tools/test_benchmark.py`` checks them against mmcv's own CPU kernels.
Every other mmcv op raises ``NotImplementedError`` when called, naming
itself, so nothing silently runs a wrong op. Benchmark-only: a benchmark
page records when it was used, and both detectors run the same stand-ins.
"""
from __future__ import annotations

import sys
import types

import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision)
from torch import Tensor

__all__ = ['install', 'nms', 'roi_align_backward', 'roi_align_forward']

_AVG = 1  # mmcv's pool_mode code for 'avg' (0 is 'max')


def _check_pool_mode(pool_mode: int) -> None:
    if pool_mode != _AVG:
        raise NotImplementedError(
            'the torchvision stand-in for mmcv roi_align has average pooling '
            "only (pool_mode='avg'); torchvision has no max-pooled RoIAlign")


def roi_align_forward(input: Tensor, rois: Tensor, output: Tensor,
                      argmax_y: Tensor, argmax_x: Tensor, *,
                      aligned_height: int, aligned_width: int,
                      spatial_scale: float, sampling_ratio: int,
                      pool_mode: int, aligned: bool) -> None:
    """mmcv's ``roi_align_forward``: fills ``output`` (R, C, h, w).

    ``rois`` is (R, 5): batch index, x1, y1, x2, y2, as in torchvision. The
    argmax buffers exist for max pooling only and stay untouched.
    """
    _check_pool_mode(pool_mode)
    output.copy_(torch.ops.torchvision.roi_align(
        input, rois.to(input.dtype), spatial_scale, aligned_height,
        aligned_width, sampling_ratio, aligned))


def roi_align_backward(grad_output: Tensor, rois: Tensor, argmax_y: Tensor,
                       argmax_x: Tensor, grad_input: Tensor, *,
                       aligned_height: int, aligned_width: int,
                       spatial_scale: float, sampling_ratio: int,
                       pool_mode: int, aligned: bool) -> None:
    """mmcv's ``roi_align_backward``: fills ``grad_input`` (N, C, H, W)."""
    _check_pool_mode(pool_mode)
    batch, channels, height, width = grad_input.shape
    grad_input.copy_(torch.ops.torchvision._roi_align_backward(
        grad_output, rois.to(grad_output.dtype), spatial_scale,
        aligned_height, aligned_width, batch, channels, height, width,
        sampling_ratio, aligned))


def nms(boxes: Tensor, scores: Tensor, *, iou_threshold: float,
        offset: int) -> Tensor:
    """mmcv's ``nms``: indices of the kept boxes, highest score first."""
    if offset != 0:
        raise NotImplementedError(
            'the torchvision stand-in for mmcv nms has offset 0 only (boxes '
            'measured as x2 - x1, as mmdet 3 measures them)')
    return torch.ops.torchvision.nms(boxes, scores, iou_threshold)


class _Extension(types.ModuleType):
    """A module whose every other attribute is an op that refuses to run.

    mmcv's ``ext_loader.load_ext`` only asks ``hasattr`` of each op name at
    import time, so all of ``mmcv.ops`` imports; the call is what fails.
    """

    def __getattr__(self, name: str):
        if name.startswith('__'):
            raise AttributeError(name)

        def missing(*args, **kwargs):
            raise NotImplementedError(
                f'mmcv op {name!r} has no torchvision stand-in '
                '(tools/analysis/mmcv_ext_torchvision.py); install mmcv '
                'with its compiled ops to run it')
        return missing


def install() -> None:
    """Make ``import mmcv.ops`` load the stand-ins as ``mmcv._ext``.

    Raises:
        RuntimeError: if mmcv's own compiled extension is already imported,
            or if mmcv has one (the stand-ins are for mmcv-lite only).
    """
    existing = sys.modules.get('mmcv._ext')
    if isinstance(existing, _Extension):
        return
    if existing is not None:
        raise RuntimeError('mmcv._ext is already imported: mmcv has its '
                           'compiled ops; the stand-ins are not needed')
    import importlib.machinery
    import importlib.util

    import mmcv
    if importlib.util.find_spec('mmcv._ext') is not None:
        raise RuntimeError(
            f'mmcv at {mmcv.__file__} has its compiled ops; the torchvision '
            'stand-ins are only for mmcv-lite')
    ext = _Extension('mmcv._ext', __doc__)
    # no loader: mmengine's mmcv_full_available() still says False
    ext.__spec__ = importlib.machinery.ModuleSpec('mmcv._ext', None)
    for function in (roi_align_forward, roi_align_backward, nms):
        setattr(ext, function.__name__, function)
    sys.modules['mmcv._ext'] = ext
    mmcv._ext = ext
