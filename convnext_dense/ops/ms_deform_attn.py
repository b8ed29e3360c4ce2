"""Multi-scale deformable attention on torch alone, as mmcv's compiled op.

Deformable DETR's attention (Zhu et al., 2021), used by DINO's and
Mask2Former's pixel decoders and transformers: every query reads, in each
head, ``num_points`` bilinearly sampled points on each of ``num_levels``
feature maps and sums them with its attention weights. mmcv 2.1.0 runs it
with a pure-PyTorch function on the CPU and, on a GPU, through
``MultiScaleDeformableAttnFunction``, which calls the compiled
``ms_deform_attn_forward`` / ``ms_deform_attn_backward``. mmcv-lite has
neither; :mod:`convnext_dense.ops.mmcv_ext` serves these two functions in
their place, with mmcv's signatures:

- sampling: a location (x, y) in [0, 1] of a level of size (H, W) reads
  pixel coordinates (x * W - 0.5, y * H - 0.5), bilinearly, with zeros
  outside the map, as mmcv's kernel does; that is ``grid_sample`` with
  ``align_corners=False`` and zero padding, once per level. A level of
  size 0 adds zeros, as in mmcv's kernel;
- ``im2col_step``: the batch is processed in chunks of that many samples,
  and must divide into them, as in mmcv;
- dtypes: float32 and float64 are computed in their own precision; float16
  (which mmcv's CUDA kernel also accepts) and bfloat16 (which it refuses)
  are computed in float32 and rounded once. Autocast is off inside the op:
  under autocast, ``MultiScaleDeformableAttnFunction`` has already cast
  the locations and weights to the dtype of ``value``;
- the backward samples again (for the weights' gradient), runs
  ``grid_sample``'s backward per level, and adds the gradients into the
  (zero) tensors it is given; nothing but the inputs is kept between
  forward and backward, as with mmcv's kernel.

Any device works, and any memory layout (mmcv's CUDA kernel requires
contiguous tensors).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ['ms_deform_attn_backward', 'ms_deform_attn_forward']

_REDUCED = (torch.float16, torch.bfloat16)
_DTYPES = (torch.float32, torch.float64) + _REDUCED


def _levels(value: Tensor, spatial_shapes: Tensor,
            level_start_index: Tensor, sampling_loc: Tensor,
            attn_weight: Tensor,
            im2col_step: int) -> tuple[list[tuple[int, int, int]], int]:
    """Check the inputs; (start, height, width) per level and the chunk."""
    if value.dim() != 4:
        raise ValueError('ms_deform_attn: value must be (batch, keys, heads, '
                         f'channels), got shape {tuple(value.shape)}')
    batch, keys, heads = value.shape[:3]
    levels = spatial_shapes.size(0)
    if sampling_loc.shape[:4] != (batch, sampling_loc.size(1), heads,
                                  levels) or sampling_loc.dim() != 6 \
            or sampling_loc.size(5) != 2:
        raise ValueError(
            'ms_deform_attn: sampling_loc must be (batch, queries, heads, '
            f'levels, points, 2) = ({batch}, Q, {heads}, {levels}, P, 2), '
            f'got {tuple(sampling_loc.shape)}')
    if attn_weight.shape != sampling_loc.shape[:5]:
        raise ValueError(
            'ms_deform_attn: attn_weight must be (batch, queries, heads, '
            f'levels, points) = {tuple(sampling_loc.shape[:5])}, got '
            f'{tuple(attn_weight.shape)}')
    if value.dtype not in _DTYPES:
        raise TypeError(f'ms_deform_attn: value of dtype {value.dtype}; '
                        f'floating point only')
    if im2col_step < 1:
        raise ValueError(f'ms_deform_attn: im2col_step must be >= 1, got '
                         f'{im2col_step}')
    step = min(batch, im2col_step) if batch else 1
    if batch % step:
        raise ValueError(f'ms_deform_attn: batch ({batch}) must be divisible '
                         f'by im2col_step ({step}), as in mmcv')
    table = [(int(start), int(height), int(width)) for start, (height, width)
             in zip(level_start_index.tolist(), spatial_shapes.tolist())]
    for level, (start, height, width) in enumerate(table):
        if start < 0 or height < 0 or width < 0 or \
                start + height * width > keys:
            raise ValueError(
                f'ms_deform_attn: level {level} ({height}x{width} from key '
                f'{start}) does not lie within the {keys} keys of value')
    return table, step


def _grids_and_weights(sampling_loc: Tensor,
                       attn_weight: Tensor) -> tuple[Tensor, Tensor]:
    """The per-level sampling grids (L, B * M, Q, P, 2) and weights (L,
    B * M, 1, Q, P), each level contiguous: ``grid_sample``'s CPU kernels
    are fastest on contiguous maps and grids (measured: 2.7x slower on
    strided slices)."""
    batch, queries, heads, levels, points = attn_weight.shape
    # grid_sample's -1 and 1 are the outer edges of the border pixels
    # (align_corners=False), as a location's 0 and 1 are:
    # (B, Q, M, L, P, 2) -> (L, B, M, Q, P, 2)
    grids = (2 * sampling_loc - 1).permute(3, 0, 2, 1, 4, 5).reshape(
        levels, batch * heads, queries, points, 2)
    weights = attn_weight.permute(3, 0, 2, 1, 4).reshape(
        levels, batch * heads, 1, queries, points)
    return grids, weights


def _level_map(value: Tensor, start: int, height: int, width: int) -> Tensor:
    """(B, S, M, D) -> the level's (B * M, D, H, W), contiguous."""
    batch, _, heads, channels = value.shape
    return value[:, start:start + height * width].permute(0, 2, 3, 1).reshape(
        batch * heads, channels, height, width)


def _sample(level_map: Tensor, grid: Tensor) -> Tensor:
    """(B * M, D, H, W), (B * M, Q, P, 2) -> (B * M, D, Q, P)."""
    return F.grid_sample(level_map, grid, mode='bilinear',
                         padding_mode='zeros', align_corners=False)


def _attend(value: Tensor, table: list[tuple[int, int, int]],
            sampling_loc: Tensor, attn_weight: Tensor) -> Tensor:
    """The attention of one chunk: (B, Q, M * D)."""
    batch, _, heads, channels = value.shape
    queries = sampling_loc.size(1)
    grids, weights = _grids_and_weights(sampling_loc, attn_weight)
    out = value.new_zeros(batch * heads, channels, queries)
    for level, (start, height, width) in enumerate(table):
        if height * width == 0:
            continue  # an empty map adds zeros, as in mmcv's kernel
        sampled = _sample(_level_map(value, start, height, width),
                          grids[level])
        # weighted and summed over the points: (B * M, D, Q)
        out += (sampled * weights[level]).sum(-1)
    # (B * M, D, Q) -> (B, M * D, Q) -> (B, Q, M * D)
    return out.view(batch, heads * channels, queries).transpose(1, 2)


def _attend_backward(value: Tensor, table: list[tuple[int, int, int]],
                     sampling_loc: Tensor, attn_weight: Tensor,
                     grad_output: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The gradients of :func:`_attend` for ``grad_output`` (B, Q, M * D):
    of the value, the locations and the weights.

    What autograd of :func:`_attend` computes, without its product of
    samples and weights (measured: 25% less time, the same numbers).
    """
    batch, _, heads, channels = value.shape
    queries, levels, points = sampling_loc.shape[1], *sampling_loc.shape[3:5]
    grids, weights = _grids_and_weights(sampling_loc, attn_weight)
    # (B, Q, M * D) -> (B * M, D, Q, 1)
    grad = grad_output.reshape(batch, queries, heads, channels).permute(
        0, 2, 3, 1).reshape(batch * heads, channels, queries, 1)
    grad_value = torch.zeros_like(value)
    grad_grids = torch.zeros_like(grids)
    grad_weights = weights.new_zeros(levels, batch * heads, queries, points)
    for level, (start, height, width) in enumerate(table):
        if height * width == 0:
            continue
        level_map = _level_map(value, start, height, width)
        # the weights' gradient: the samples, summed over the channels
        grad_weights[level] = (_sample(level_map, grids[level]) * grad).sum(1)
        # bilinear (0), zeros (0), align_corners False
        grad_map, grad_grids[level] = torch.ops.aten.grid_sampler_2d_backward(
            grad * weights[level], level_map, grids[level], 0, 0, False,
            [True, True])
        # (B * M, D, H, W) -> (B, H * W, M, D)
        grad_value[:, start:start + height * width] = grad_map.reshape(
            batch, heads, channels, height * width).permute(0, 3, 1, 2)
    # location = (grid + 1) / 2: twice the grid's gradient, back to
    # (B, Q, M, L, P, 2); the weights' back to (B, Q, M, L, P)
    grad_loc = (2 * grad_grids).view(levels, batch, heads, queries, points,
                                     2).permute(1, 3, 2, 0, 4, 5)
    grad_weight = grad_weights.view(levels, batch, heads, queries,
                                    points).permute(1, 3, 2, 0, 4)
    return grad_value, grad_loc, grad_weight


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in _REDUCED else dtype


def ms_deform_attn_forward(value: Tensor, spatial_shapes: Tensor,
                           level_start_index: Tensor, sampling_loc: Tensor,
                           attn_weight: Tensor, *, im2col_step: int) -> Tensor:
    """mmcv's ``ms_deform_attn_forward``.

    Args:
        value: (batch, keys, heads, channels), the levels' maps flattened
            row by row and concatenated along the keys.
        spatial_shapes: (levels, 2) integer (height, width) of each level.
        level_start_index: (levels,) the key at which each level starts.
        sampling_loc: (batch, queries, heads, levels, points, 2) locations
            (x, y), 0 and 1 at the outer edges of a level's border pixels.
        attn_weight: (batch, queries, heads, levels, points).
        im2col_step: Samples per chunk of the batch (the chunk is at most
            the batch, and must divide it).

    Returns:
        (batch, queries, heads * channels) in the dtype of ``value``.
    """
    table, step = _levels(value, spatial_shapes, level_start_index,
                          sampling_loc, attn_weight, im2col_step)
    batch, _, heads, channels = value.shape
    dtype = _compute_dtype(value.dtype)
    output = value.new_empty(batch, sampling_loc.size(1), heads * channels)
    with torch.no_grad(), torch.autocast(value.device.type, enabled=False):
        for first in range(0, batch, step):
            chunk = slice(first, first + step)
            output[chunk] = _attend(value[chunk].to(dtype), table,
                                    sampling_loc[chunk].to(dtype),
                                    attn_weight[chunk].to(dtype))
    return output


def ms_deform_attn_backward(value: Tensor, spatial_shapes: Tensor,
                            level_start_index: Tensor, sampling_loc: Tensor,
                            attn_weight: Tensor, grad_output: Tensor,
                            grad_value: Tensor, grad_sampling_loc: Tensor,
                            grad_attn_weight: Tensor, *,
                            im2col_step: int) -> None:
    """mmcv's ``ms_deform_attn_backward``: adds the gradients of the
    forward's output, given ``grad_output`` (batch, queries, heads *
    channels), into ``grad_value``, ``grad_sampling_loc`` and
    ``grad_attn_weight`` (zeros from ``MultiScaleDeformableAttnFunction``),
    shaped as ``value``, ``sampling_loc`` and ``attn_weight``."""
    table, step = _levels(value, spatial_shapes, level_start_index,
                          sampling_loc, attn_weight, im2col_step)
    dtype = _compute_dtype(value.dtype)
    with torch.no_grad(), torch.autocast(value.device.type, enabled=False):
        for first in range(0, value.size(0), step):
            chunk = slice(first, first + step)
            grads = _attend_backward(
                value[chunk].to(dtype), table, sampling_loc[chunk].to(dtype),
                attn_weight[chunk].to(dtype), grad_output[chunk].to(dtype))
            for target, grad in zip(
                    (grad_value, grad_sampling_loc, grad_attn_weight), grads):
                target[chunk] += grad
