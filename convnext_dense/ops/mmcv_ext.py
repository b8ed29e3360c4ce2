"""torch/torchvision implementations of mmcv's compiled ops, as ``mmcv._ext``.

mmcv 2.1.0 (the newest mmcv that mmdet 3.3.0 and mmsegmentation 1.2.2 accept)
has no wheel with compiled ops for any current torch and no longer compiles
against torch >= 2.14. Its pure-Python build, mmcv-lite, has every Python
module of ``mmcv.ops`` but no extension: ``mmcv.ops`` asks
``mmcv.utils.ext_loader.load_ext('_ext', [...])`` for its kernels, which
imports ``mmcv._ext`` and checks that each named function exists.

:func:`install` puts a module in the place of that extension. It provides
every kernel the shipped detection and segmentation configs reach, with the
same signature and the same arithmetic as mmcv's CPU kernels
(``tests/ops/test_mmcv_ext.py`` compares them with golden tensors recorded
from compiled mmcv by ``dev/record_mmcv_goldens.py``):

- ``roi_align_forward`` / ``roi_align_backward`` (average pooling): the RoI
  feature extractors of Mask R-CNN and Cascade Mask R-CNN, and mmdet's mask
  targets. torchvision's RoIAlign samples exactly as mmcv's does (both come
  from Detectron2's); half and bfloat16 inputs are computed in float32
  (torchvision's CPU kernel has no bfloat16), and the float32 copy of a
  feature map is kept while the map lives unchanged, so that the cascade's
  six RoI extractions of one map under autocast cast it once, not six times.
- ``nms``: every batched NMS (RPN, RoI heads, test-time augmentation).
  torchvision's greedy NMS, fed boxes in the order of mmcv's own score sort
  so that ties are kept in mmcv's order, with the threshold rounded to
  float32 as mmcv's kernel takes it; half and bfloat16 boxes (autocast)
  are compared in float32.
- ``softnms``: soft-NMS (linear, gaussian, naive) in torch, vectorised over
  the remaining boxes; it reproduces mmcv's order of swaps, and so its
  indices, scores and output order.
- ``ms_deform_attn_forward`` / ``ms_deform_attn_backward``: multi-scale
  deformable attention (DINO, Mask2Former) on a GPU, where mmcv's
  ``MultiScaleDeformableAttention`` calls the compiled op (on the CPU it
  runs its own pure-PyTorch function): ``grid_sample`` per level, in
  :mod:`convnext_dense.ops.ms_deform_attn` (checked against mmcv's
  pure-PyTorch function and by numerical gradients,
  ``tests/ops/test_ms_deform_attn.py``).

Any other op is a function that raises, when called, an error naming the op
and the install option that provides it (``bash tools/install.sh
--mmcv-ops``), so nothing silently runs a wrong op. An mmcv that has its
compiled extension is left alone.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types

import numpy as np
import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision)
from torch import Tensor
from torch.utils.weak import WeakTensorKeyDictionary

from .ms_deform_attn import ms_deform_attn_backward, ms_deform_attn_forward

__all__ = ['OPS', 'install', 'mmcv_ops_source', 'ms_deform_attn_backward',
           'ms_deform_attn_forward', 'nms', 'roi_align_backward',
           'roi_align_forward', 'softnms']

INSTALL_HINT = ('bash tools/install.sh --mmcv-ops (mmcv 2.1.0 compiled with '
                'all its ops; see README)')
_AVG = 1  # mmcv's pool_mode code for 'avg' (0 is 'max')
_REDUCED = (torch.float16, torch.bfloat16)
# reduced-precision feature map -> (its version counter, float32 copy); an
# entry goes with its map, and an in-place change of the map (a new
# version) makes a new copy
_FLOAT32_COPIES = WeakTensorKeyDictionary()


def _float32(input: Tensor) -> Tensor:
    """``input`` in float32, a reduced-precision map converted once."""
    if input.dtype not in _REDUCED:
        return input
    if input.is_inference():
        return input.float()  # no version counter to tell a change by
    cached = _FLOAT32_COPIES.get(input)
    if cached is not None and cached[0] == input._version:
        return cached[1]
    copy = input.float()
    _FLOAT32_COPIES[input] = (input._version, copy)
    return copy


def _refuse(what: str) -> NotImplementedError:
    return NotImplementedError(
        f'{what} is not provided by convnext_dense.ops (mmcv-lite, no '
        f'compiled ops); to run it, install with {INSTALL_HINT}')


def _check_pool_mode(pool_mode: int) -> None:
    if pool_mode != _AVG:
        raise _refuse("mmcv op 'roi_align' with pool_mode='max' "
                      '(torchvision has average pooling only)')


def roi_align_forward(input: Tensor, rois: Tensor, output: Tensor,
                      argmax_y: Tensor, argmax_x: Tensor, *,
                      aligned_height: int, aligned_width: int,
                      spatial_scale: float, sampling_ratio: int,
                      pool_mode: int, aligned: bool) -> None:
    """mmcv's ``roi_align_forward``: fills ``output`` (R, C, h, w).

    ``rois`` is (R, 5): batch index, x1, y1, x2, y2, as in torchvision. The
    argmax buffers exist for max pooling only and stay untouched. Any memory
    layout of ``input`` works (torchvision reads it contiguously).
    """
    _check_pool_mode(pool_mode)
    input = _float32(input)
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
    dtype = (torch.float32 if grad_output.dtype in _REDUCED else
             grad_output.dtype)
    grad_input.copy_(torch.ops.torchvision._roi_align_backward(
        grad_output.to(dtype), rois.to(dtype), spatial_scale,
        aligned_height, aligned_width, batch, channels, height, width,
        sampling_ratio, aligned))


def nms(boxes: Tensor, scores: Tensor, *, iou_threshold: float,
        offset: int) -> Tensor:
    """mmcv's ``nms``: indices of the kept boxes, highest score first.

    A box is dropped when its IoU with a kept, higher-scored box is above
    ``iou_threshold`` (mmcv's kernel compares in float32).
    """
    if offset != 0:
        raise _refuse("mmcv op 'nms' with offset=1 (mmdet 3 uses offset 0)")
    if boxes.numel() == 0:
        return boxes.new_empty((0, ), dtype=torch.long)
    # mmcv sorts with torch's (unstable) sort and keeps that order for ties;
    # torchvision's stable sort of the permuted scores then keeps it too
    order = scores.sort(0, descending=True)[1]
    threshold = float(np.float32(iou_threshold))
    if boxes.dtype in _REDUCED:  # torchvision's CPU NMS has float32 only
        boxes, scores = boxes.float(), scores.float()
    keep = torch.ops.torchvision.nms(boxes[order], scores[order], threshold)
    return order[keep]


_SOFTNMS_METHODS = {0: 'naive', 1: 'linear', 2: 'gaussian'}


def softnms(boxes: Tensor, scores: Tensor, dets: Tensor, *,
            iou_threshold: float, sigma: float, min_score: float,
            method: int, offset: int) -> Tensor:
    """mmcv's ``softnms`` (CPU): fills ``dets`` (N, 5) and returns indices.

    Step ``i`` takes the highest-scored remaining box (the first of equal
    scores), swaps it into place ``i``, and rescales the scores of the boxes
    after it by their IoU with it: ``naive`` drops those with IoU >=
    ``iou_threshold``, ``linear`` multiplies them by ``1 - IoU``,
    ``gaussian`` by ``exp(-IoU**2 / sigma)``. A box whose score falls below
    ``min_score`` is replaced by the last remaining box, as mmcv's kernel
    does; this order decides ties, so it is reproduced exactly.

    Returns:
        The original indices of the kept boxes in the order they were
        taken; ``dets[:len(indices)]`` holds their boxes and final scores.
    """
    if method not in _SOFTNMS_METHODS:
        raise ValueError(f'softnms method {method} is not one of '
                         f'{_SOFTNMS_METHODS}')
    count = boxes.size(0)
    if count == 0:
        return boxes.new_empty((0, ), dtype=torch.long)
    f32 = torch.float32
    box = boxes.detach().to('cpu', f32).clone()  # (N, 4), permuted in place
    score = scores.detach().to('cpu', f32).clone()  # (N,)
    area = ((box[:, 2] - box[:, 0] + offset) *
            (box[:, 3] - box[:, 1] + offset))
    index = torch.arange(count)
    thr = torch.tensor(iou_threshold, dtype=f32)
    sig = torch.tensor(sigma, dtype=f32)
    low = torch.tensor(min_score, dtype=f32)
    out = torch.empty((count, 5), dtype=f32)
    alive = count  # boxes [0, alive) remain
    for i in range(count):
        if i >= alive:
            break
        top = i + int(torch.argmax(score[i:alive]))  # first of equal maxima
        for tensor in (box, score, area, index):
            tensor[[i, top]] = tensor[[top, i]]
        out[i, :4], out[i, 4] = box[i], score[i]
        rest = slice(i + 1, alive)
        x1 = torch.maximum(box[i, 0], box[rest, 0])
        y1 = torch.maximum(box[i, 1], box[rest, 1])
        x2 = torch.minimum(box[i, 2], box[rest, 2])
        y2 = torch.minimum(box[i, 3], box[rest, 3])
        inter = ((x2 - x1 + offset).clamp(min=0) *
                 (y2 - y1 + offset).clamp(min=0))
        iou = inter / (area[i] + area[rest] - inter)
        if method == 0:
            weight = torch.where(iou >= thr, 0.0, 1.0).to(f32)
        elif method == 1:
            weight = torch.where(iou >= thr, 1 - iou, 1.0).to(f32)
        else:
            weight = torch.exp(-(iou * iou) / sig)
        score[rest] *= weight
        # mmcv replaces each dropped box by the current last one and looks
        # at the same place again; holes are filled from the back
        dropped = (score[rest] < low).nonzero().flatten().tolist()
        last = alive - 1
        for hole in (i + 1 + d for d in dropped):
            if hole > last:
                break
            while last > hole and bool(score[last] < low):
                last -= 1
            if last == hole:
                last -= 1
                break
            for tensor in (box, score, area, index):
                tensor[hole] = tensor[last]
            last -= 1
        alive = last + 1
    dets[:alive].copy_(out[:alive])
    return index[:alive].clone()


OPS = (roi_align_forward, roi_align_backward, nms, softnms,
       ms_deform_attn_forward, ms_deform_attn_backward)


class _Extension(types.ModuleType):
    """``mmcv._ext`` made of :data:`OPS`; any other op refuses to run.

    ``load_ext`` only asks ``hasattr`` of each op name when ``mmcv.ops`` is
    imported, so all of ``mmcv.ops`` imports and only a call fails.
    """

    def __getattr__(self, name: str):
        if name.startswith('__'):
            raise AttributeError(name)

        def missing(*args, **kwargs):
            raise _refuse(f'mmcv op {name!r}')
        missing.__name__ = name
        return missing


def _mmcv_has_compiled_ops() -> bool:
    existing = sys.modules.get('mmcv._ext')
    if existing is not None:
        return not isinstance(existing, _Extension)
    # the file system only: the start-up finder of ops/startup/ must not
    # count as compiled ops
    spec = importlib.util.find_spec('mmcv')
    return spec is not None and importlib.machinery.PathFinder.find_spec(
        'mmcv._ext', spec.submodule_search_locations) is not None


def mmcv_ops_source() -> str:
    """'mmcv' when mmcv's compiled ops serve ``mmcv.ops``; 'torchvision'
    when this module's do; 'none' without mmcv."""
    if importlib.util.find_spec('mmcv') is None:
        return 'none'
    return 'mmcv' if _mmcv_has_compiled_ops() else 'torchvision'


def build_extension() -> types.ModuleType:
    """A fresh ``mmcv._ext`` stand-in (registered nowhere)."""
    ext = _Extension('mmcv._ext', __doc__)
    # no loader: mmengine's mmcv_full_available() still says False
    ext.__spec__ = importlib.machinery.ModuleSpec('mmcv._ext', None)
    for function in OPS:
        setattr(ext, function.__name__, function)
    return ext


def install() -> bool:
    """Serve ``mmcv._ext`` from :data:`OPS` where mmcv has no compiled ops.

    Idempotent; does nothing without mmcv or with mmcv's compiled ops.

    Returns:
        True if the stand-in serves ``mmcv._ext`` after the call.
    """
    if mmcv_ops_source() != 'torchvision':
        return False
    if isinstance(sys.modules.get('mmcv._ext'), _Extension):
        return True
    import mmcv
    ext = build_extension()
    sys.modules['mmcv._ext'] = ext
    mmcv._ext = ext
    return True
