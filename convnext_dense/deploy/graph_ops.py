"""Tensor-only pieces of a two-stage detector's test path, for ONNX graphs.

mmdet's test path is written for eager PyTorch: Python branches on tensor
sizes, ``InstanceData`` containers, in-place clamps of strided views, and
mmcv ops that call this package's torchvision kernels from Python (which a
tracer cannot see into). Each function here computes the same numbers with
operations the TorchScript exporter turns into standard ONNX:

- :func:`batched_nms`: ONNX ``NonMaxSuppression`` (one batch entry per
  class, so per-class NMS is exact, with no coordinate offsets);
- :func:`multi_level_roi_align`: ONNX ``RoiAlign`` (opset >= 16 for
  mmcv's ``aligned=True``), one call per pyramid level;
- :func:`delta2bbox`: mmdet's ``delta2bbox`` without in-place clamps;
- :func:`paste_masks`: mmdet's CPU ``_do_paste_mask`` through ONNX
  ``GridSample`` (opset >= 16), for all instances at once.

Sizes that depend on the data (boxes kept by NMS, the image size) stay
tensors while tracing, so the graph takes any input size.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor

# mmdet's default aspect-ratio clip of DeltaXYWHBBoxCoder.decode
WH_RATIO_CLIP = 16 / 1000


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` with a faithful eager implementation.

    boxes (B, N, 4) x1y1x2y2, scores (B, C, N) -> selected (K, 3) int64 rows
    (batch, class, box), ordered by batch, then class, then descending
    score, as onnxruntime orders them. A box is suppressed when its IoU
    with a kept box of the same (batch, class) is above ``iou_threshold``;
    boxes scoring at most ``score_threshold`` are never kept.
    """

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, max_per_class: int,
                iou_threshold: float, score_threshold: float) -> Tensor:
        rows = []
        for b in range(scores.shape[0]):
            for c in range(scores.shape[1]):
                score = scores[b, c]
                candidates = (score > score_threshold).nonzero().flatten()
                keep = torchvision.ops.nms(boxes[b, candidates],
                                           score[candidates], iou_threshold)
                keep = candidates[keep[:max_per_class]]
                rows.append(torch.stack(
                    [torch.full_like(keep, b), torch.full_like(keep, c),
                     keep], dim=1))
        return torch.cat(rows).to(torch.int64)

    @staticmethod
    def symbolic(g, boxes, scores, max_per_class, iou_threshold,
                 score_threshold):
        def const(value, dtype):
            return g.op('Constant',
                        value_t=torch.tensor([value], dtype=dtype))

        return g.op('NonMaxSuppression', boxes, scores,
                    const(max_per_class, torch.int64),
                    const(iou_threshold, torch.float32),
                    const(score_threshold, torch.float32))


def batched_nms(boxes: Tensor, scores: Tensor, iou_threshold: float,
                max_per_class: int = 2**31 - 1,
                score_threshold: float = -math.inf) -> Tensor:
    """Per-group NMS: ``boxes`` (B, N, 4), ``scores`` (B, C, N).

    Returns:
        (K, 3) int64 rows (group b, class c, box index).
    """
    # onnxruntime reads the float thresholds as float32, as mmcv's kernel
    return _NonMaxSuppression.apply(boxes, scores, int(max_per_class),
                                    float(iou_threshold),
                                    float(score_threshold))


def delta2bbox(rois: Tensor, deltas: Tensor, means: tuple, stds: tuple,
               max_hw: tuple[Tensor, Tensor] | None) -> Tensor:
    """mmdet's ``delta2bbox`` (DeltaXYWHBBoxCoder, no centre clamp).

    rois (N, 4), deltas (N, 4k) -> boxes (N, 4k), clipped to ``max_hw``
    (height, width) when given.
    """
    num_rois = deltas.shape[0]
    deltas = deltas.reshape(num_rois, -1, 4)  # (N, k, 4)
    denorm = deltas * deltas.new_tensor(stds) + deltas.new_tensor(means)
    dxy, dwh = denorm[..., :2], denorm[..., 2:]
    rois = rois[:, None, :]  # (N, 1, 4)
    pxy = (rois[..., :2] + rois[..., 2:]) * 0.5
    pwh = rois[..., 2:] - rois[..., :2]
    max_ratio = abs(math.log(WH_RATIO_CLIP))
    gxy = pxy + pwh * dxy
    gwh = pwh * dwh.clamp(min=-max_ratio, max=max_ratio).exp()
    boxes = torch.cat([gxy - gwh * 0.5, gxy + gwh * 0.5], dim=-1)
    if max_hw is not None:
        height, width = max_hw
        # torch.clamp with tensor bounds exports as Max/Min
        upper = torch.stack([width, height, width, height]).to(boxes.dtype)
        boxes = torch.minimum(boxes.clamp(min=0), upper)
    return boxes.reshape(num_rois, -1)


def multi_level_roi_align(extractor, feats: tuple[Tensor, ...],
                          rois: Tensor) -> Tensor:
    """mmdet's ``SingleRoIExtractor`` on ``rois`` (R, 5).

    Each RoI is pooled from the level ``map_roi_levels`` assigns it; every
    level pools all RoIs and a select keeps the right one, which costs
    ``num_levels`` RoIAligns but needs no data-dependent scatter.
    """
    num_levels = len(extractor.featmap_strides)
    feats = feats[:num_levels]
    levels = extractor.map_roi_levels(rois, num_levels)  # (R,)
    out = None
    for i, layer in enumerate(extractor.roi_layers):
        pooled = torchvision.ops.roi_align(
            feats[i], rois, output_size=layer.output_size,
            spatial_scale=layer.spatial_scale,
            sampling_ratio=layer.sampling_ratio, aligned=layer.aligned)
        chosen = (levels == i).view(-1, 1, 1, 1)
        out = pooled if out is None else torch.where(chosen, pooled, out)
    return out


def paste_masks(masks: Tensor, boxes: Tensor, img_h: Tensor, img_w: Tensor,
                threshold: float) -> Tensor:
    """Paste (K, h, w) mask probabilities into (K, img_h, img_w) booleans.

    The same grid and bilinear sampling as mmdet's ``_do_paste_mask``; as
    on mmdet's CPU path (``skip_empty=True``, one instance per chunk),
    each instance is pasted only inside its box widened by one pixel and
    clipped to the image; outside it the mask is False.
    """
    x0, y0, x1, y1 = boxes.unbind(dim=1)  # each (K,)
    ys = torch.arange(img_h).to(torch.float32) + 0.5  # (H,)
    xs = torch.arange(img_w).to(torch.float32) + 0.5  # (W,)
    gy = (ys[None] - y0[:, None]) / (y1 - y0)[:, None] * 2 - 1  # (K, H)
    gx = (xs[None] - x0[:, None]) / (x1 - x0)[:, None] * 2 - 1  # (K, W)
    num = masks.shape[0]
    grid = torch.stack([
        gx[:, None, :].expand(num, gy.shape[1], gx.shape[1]),
        gy[:, :, None].expand(num, gy.shape[1], gx.shape[1])
    ], dim=3)  # (K, H, W, 2)
    pasted = F.grid_sample(masks[:, None].to(torch.float32), grid,
                           align_corners=False)[:, 0]  # (K, H, W)
    # mmdet's per-instance window: [floor(x0) - 1, ceil(x1) + 1) clipped
    inside_x = (xs[None] >= (x0.floor() - 1).clamp(min=0)[:, None]) & \
        (xs[None] < (x1.ceil() + 1)[:, None])
    inside_y = (ys[None] >= (y0.floor() - 1).clamp(min=0)[:, None]) & \
        (ys[None] < (y1.ceil() + 1)[:, None])
    inside = inside_y[:, :, None] & inside_x[:, None, :]
    return (pasted >= threshold) & inside


def adaptive_avg_pool2d(x: Tensor, output_size: int | tuple) -> Tensor:
    """``F.adaptive_avg_pool2d`` for inputs of any size, in ONNX ops.

    ONNX has no adaptive pooling (the exporter handles only sizes it knows
    at export time); output cell i of s averages rows [floor(i H / s),
    ceil((i + 1) H / s)), as PyTorch's kernel does, here as one slice and
    mean per cell, with H and W kept as traced tensors.
    """
    out_h, out_w = (output_size, output_size) if isinstance(
        output_size, int) else output_size
    height, width = torch._shape_as_tensor(x)[2], torch._shape_as_tensor(x)[3]

    def bounds(i, size, n):
        return (i * size) // n, ((i + 1) * size + n - 1) // n

    rows = []
    for i in range(out_h):
        y0, y1 = bounds(i, height, out_h)
        cells = []
        for j in range(out_w):
            x0, x1 = bounds(j, width, out_w)
            cells.append(x[:, :, y0:y1, x0:x1].mean(dim=(2, 3),
                                                     keepdim=True))
        rows.append(torch.cat(cells, dim=3))
    return torch.cat(rows, dim=2)  # (N, C, out_h, out_w)


class AdaptiveAvgPool2d(torch.nn.Module):
    """Drop-in for ``nn.AdaptiveAvgPool2d`` in exported graphs."""

    def __init__(self, output_size) -> None:
        super().__init__()
        self.output_size = output_size

    def forward(self, x: Tensor) -> Tensor:
        return adaptive_avg_pool2d(x, self.output_size)


def replace_adaptive_pools(module: torch.nn.Module) -> int:
    """Swap every ``nn.AdaptiveAvgPool2d`` in ``module`` (in place) for
    :class:`AdaptiveAvgPool2d`; returns how many were swapped."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, torch.nn.AdaptiveAvgPool2d):
            if not isinstance(child.output_size, int) and \
                    None in tuple(child.output_size):
                raise ValueError('AdaptiveAvgPool2d with a None output size')
            setattr(module, name, AdaptiveAvgPool2d(child.output_size))
            count += 1
        else:
            count += replace_adaptive_pools(child)
    return count
