"""Multi-scale deformable attention of convnext_dense.ops against mmcv.

mmcv's pure-PyTorch ``multi_scale_deformable_attn_pytorch`` (what mmcv runs
on the CPU) is the reference of the forward, and a loop that follows mmcv's
CUDA kernel point by point a second one; gradients are checked numerically
(``gradcheck`` in float64) through ``MultiScaleDeformableAttnFunction``, the
autograd function that calls the op on a GPU, here on the CPU. The CUDA
comparison is in test_ms_deform_attn_gpu.py.
"""
from __future__ import annotations

import sys

import pytest
import torch

import convnext_dense  # noqa: F401  (installs the ops)
from convnext_dense.ops import mmcv_ops_source
from convnext_dense.ops.ms_deform_attn import (ms_deform_attn_backward,
                                               ms_deform_attn_forward)
from mmcv.ops.multi_scale_deform_attn import (  # noqa: E402
    MultiScaleDeformableAttnFunction, multi_scale_deformable_attn_pytorch)

pytestmark = pytest.mark.skipif(
    mmcv_ops_source() != 'torchvision',
    reason='mmcv has its compiled ops here: the stand-ins are not in use')
F64 = torch.float64
EPS = torch.finfo(F64).eps


def inputs(batch=2, heads=2, channels=3, queries=4, points=3,
           shapes=((5, 4), (3, 2), (1, 1)), dtype=F64, seed=0,
           spread=(-0.2, 1.2)):
    """value, spatial shapes, level starts, locations (some outside [0, 1]
    when ``spread`` says so) and attention weights."""
    generator = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(shapes, dtype=torch.long)
    starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    keys, levels = int(shapes.prod(1).sum()), len(shapes)
    value = torch.randn(batch, keys, heads, channels, generator=generator,
                        dtype=dtype)
    low, high = spread
    loc = torch.rand(batch, queries, heads, levels, points, 2,
                     generator=generator, dtype=dtype) * (high - low) + low
    weight = torch.rand(batch, queries, heads, levels, points,
                        generator=generator, dtype=dtype)
    return value, shapes, starts, loc, weight


def forward(value, shapes, starts, loc, weight, step=64):
    return ms_deform_attn_forward(value, shapes, starts, loc, weight,
                                  im2col_step=step)


def grads(value, shapes, starts, loc, weight, grad_out, step=64):
    out = [torch.zeros_like(t) for t in (value, loc, weight)]
    ms_deform_attn_backward(value, shapes, starts, loc, weight, grad_out,
                            *out, im2col_step=step)
    return out


def assert_float64_rounding(ours, value, shapes, loc, weight):
    """Ours equals mmcv's pure-PyTorch result up to float64 rounding: the
    same bilinear samples, summed in another order, so within a few eps of
    the sum of the terms' magnitudes."""
    expected = multi_scale_deformable_attn_pytorch(value, shapes, loc, weight)
    scale = multi_scale_deformable_attn_pytorch(value.abs(), shapes, loc,
                                                weight.abs())
    bound = 8 * EPS * scale + torch.finfo(F64).tiny
    assert ours.shape == expected.shape
    assert ((ours - expected).abs() <= bound).all(), \
        ((ours - expected).abs() / bound).max()


@pytest.mark.parametrize('case', [
    dict(),
    dict(batch=3, heads=4, channels=8, queries=7, points=4),
    dict(shapes=((1, 1),), points=1),  # one level of one pixel
    dict(shapes=((6, 1), (1, 5), (2, 2), (1, 1))),
    dict(spread=(-3., 4.)),  # most points outside the maps
    dict(channels=71, queries=2),
])
def test_forward_equals_mmcv_pytorch_to_float64_rounding(case) -> None:
    value, shapes, starts, loc, weight = inputs(**case)
    assert_float64_rounding(forward(value, shapes, starts, loc, weight),
                            value, shapes, loc, weight)


def kernel_loop(value, shapes, starts, loc, weight):
    """mmcv's CUDA kernel, one output element at a time: a point at
    (x * W - 0.5, y * H - 0.5) reads the four pixels around it that lie
    inside the map, if it lies within one pixel of the map."""
    batch, _, heads, channels = value.shape
    queries, levels, points = loc.shape[1], loc.shape[3], loc.shape[4]
    out = torch.zeros(batch, queries, heads, channels, dtype=value.dtype)
    for b in range(batch):
        for q in range(queries):
            for m in range(heads):
                for lv in range(levels):
                    height, width = (int(s) for s in shapes[lv])
                    start = int(starts[lv])
                    for p in range(points):
                        x, y = loc[b, q, m, lv, p].tolist()
                        h, w = y * height - 0.5, x * width - 0.5
                        if not (-1 < h < height and -1 < w < width):
                            continue
                        h0, w0 = int(torch.tensor(h).floor()), int(
                            torch.tensor(w).floor())
                        lh, lw = h - h0, w - w0
                        sample = torch.zeros(channels, dtype=value.dtype)
                        for hh, ww, area in (
                                (h0, w0, (1 - lh) * (1 - lw)),
                                (h0, w0 + 1, (1 - lh) * lw),
                                (h0 + 1, w0, lh * (1 - lw)),
                                (h0 + 1, w0 + 1, lh * lw)):
                            if 0 <= hh < height and 0 <= ww < width:
                                sample += area * value[
                                    b, start + hh * width + ww, m]
                        out[b, q, m] += weight[b, q, m, lv, p] * sample
    return out.flatten(2)


def test_forward_equals_mmcv_kernel_loop() -> None:
    value, shapes, starts, loc, weight = inputs(batch=2, queries=3,
                                                points=2)
    torch.testing.assert_close(forward(value, shapes, starts, loc, weight),
                               kernel_loop(value, shapes, starts, loc,
                                           weight), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize('channels', [4, 30, 32, 64, 71, 1025])
def test_gradcheck_through_mmcv_function(channels) -> None:
    # one query, a 3x2 and a 2x1 level: gradcheck perturbs every input
    # element, so the value (8 keys x heads x channels) sets the time; at
    # more than 32 channels the random-projection mode checks the same
    # Jacobians
    value, shapes, starts, loc, weight = inputs(
        batch=2, heads=1, channels=channels, queries=1, points=2,
        shapes=((3, 2), (2, 1)), spread=(-0.1, 1.1), seed=channels)
    args = (value.requires_grad_(), shapes, starts, loc.requires_grad_(),
            weight.requires_grad_(), 1)
    assert torch.autograd.gradcheck(MultiScaleDeformableAttnFunction.apply,
                                    args, eps=1e-6, atol=1e-7, rtol=1e-5,
                                    fast_mode=channels > 32)


def test_gradients_equal_mmcv_pytorch_autograd() -> None:
    value, shapes, starts, loc, weight = inputs(batch=3, channels=5)
    grad_out = torch.randn(3, 4, 10, dtype=F64,
                           generator=torch.Generator().manual_seed(1))
    ours = grads(value, shapes, starts, loc, weight, grad_out)
    leaves = [t.clone().requires_grad_() for t in (value, loc, weight)]
    multi_scale_deformable_attn_pytorch(leaves[0], shapes, *leaves[1:]
                                        ).backward(grad_out)
    for mine, leaf in zip(ours, leaves):
        torch.testing.assert_close(mine, leaf.grad, rtol=1e-13, atol=1e-14)


def test_points_outside_every_map_give_zeros_and_zero_gradients() -> None:
    value, shapes, starts, loc, weight = inputs(spread=(1.5, 3.))
    loc[..., 0] *= -1  # some left of the maps, all below them
    assert torch.equal(forward(value, shapes, starts, loc, weight),
                       torch.zeros(2, 4, 6, dtype=F64))
    for grad in grads(value, shapes, starts, loc, weight,
                      torch.ones(2, 4, 6, dtype=F64)):
        assert not grad.any()


def test_a_level_of_size_zero_adds_nothing() -> None:
    """mmcv's kernel reads zeros from a map without pixels; the same
    attention without that level is the reference."""
    value, shapes, starts, loc, weight = inputs(
        shapes=((4, 3), (0, 5), (2, 2)))
    keep = [0, 2]
    assert_float64_rounding(
        forward(value, shapes, starts, loc, weight),
        value, shapes[keep], loc[:, :, :, keep], weight[:, :, :, keep])
    grad_out = torch.randn(2, 4, 6, dtype=F64)
    _, grad_loc, grad_weight = grads(value, shapes, starts, loc, weight,
                                     grad_out)
    assert not grad_loc[:, :, :, 1].any() and not grad_weight[:, :, :, 1].any()
    empty = torch.tensor([[0, 4]])
    assert not forward(value[:, :0], empty, starts[:1], loc[:, :, :, :1],
                       weight[:, :, :, :1]).any()


def test_im2col_step_chunks_the_batch_without_changing_results() -> None:
    value, shapes, starts, loc, weight = inputs(batch=4)
    grad_out = torch.randn(4, 4, 6, dtype=F64)
    whole = forward(value, shapes, starts, loc, weight)
    whole_grads = grads(value, shapes, starts, loc, weight, grad_out)
    for step in (1, 2, 4, 64):
        assert torch.equal(forward(value, shapes, starts, loc, weight, step),
                           whole)
        # grid_sample's CPU backward orders its sums by the batch size:
        # the value's gradient may move in its last bit
        for got, want in zip(grads(value, shapes, starts, loc, weight,
                                   grad_out, step), whole_grads):
            torch.testing.assert_close(
                got, want, rtol=0, atol=4 * EPS * want.abs().max().item())
    with pytest.raises(ValueError, match=r'batch \(4\) must be divisible '
                                         r'by im2col_step \(3\)'):
        forward(value, shapes, starts, loc, weight, 3)
    with pytest.raises(ValueError, match='im2col_step must be >= 1'):
        forward(value, shapes, starts, loc, weight, 0)


def strided(tensor: torch.Tensor) -> torch.Tensor:
    """The same values in a non-contiguous layout (batch not outermost)."""
    out = tensor.transpose(0, -1).contiguous().transpose(0, -1)
    assert not out.is_contiguous() and torch.equal(out, tensor)
    return out


def test_non_contiguous_inputs_give_the_same_results() -> None:
    value, shapes, starts, loc, weight = inputs(batch=3)
    grad_out = torch.randn(3, 4, 6, dtype=F64)
    layouts = [strided(t) for t in (value, loc, weight)]
    assert torch.equal(forward(layouts[0], shapes, starts, *layouts[1:]),
                       forward(value, shapes, starts, loc, weight))
    for got, want in zip(
            grads(layouts[0], shapes, starts, *layouts[1:],
                  strided(grad_out)),
            grads(value, shapes, starts, loc, weight, grad_out)):
        assert torch.equal(got, want)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_reduced_precision_is_float32_rounded_once(dtype) -> None:
    """The op computes bf16/fp16 in float32: within one rounding (plus the
    float32 sums' order) of mmcv's float32 result on the same values."""
    value, shapes, starts, loc, weight = inputs(dtype=torch.float32)
    value, loc, weight = (t.to(dtype) for t in (value, loc, weight))
    out = forward(value, shapes, starts, loc, weight)
    assert out.dtype == dtype
    expected = multi_scale_deformable_attn_pytorch(
        value.float(), shapes, loc.float(), weight.float())
    unit = torch.finfo(dtype).eps
    torch.testing.assert_close(out.float(), expected, rtol=unit, atol=1e-5)
    grad_value, grad_loc, grad_weight = grads(
        value, shapes, starts, loc, weight, torch.ones_like(out))
    assert grad_value.dtype == grad_loc.dtype == grad_weight.dtype == dtype


def test_autocast_bf16_through_mmcv_function() -> None:
    """Under CPU autocast a linear layer hands the attention a bf16 value;
    mmcv's function casts the float32 locations and weights to it."""
    value, shapes, starts, loc, weight = inputs(dtype=torch.float32)
    proj = torch.nn.Linear(3, 3)
    value.requires_grad_()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        projected = proj(value)
        out = MultiScaleDeformableAttnFunction.apply(
            projected, shapes, starts, loc, weight, 64)
    assert projected.dtype == out.dtype == torch.bfloat16
    expected = multi_scale_deformable_attn_pytorch(
        projected.float(), shapes, loc.bfloat16().float(),
        weight.bfloat16().float())
    torch.testing.assert_close(out.float(), expected, rtol=2 ** -8,
                               atol=1e-3)
    out.float().sum().backward()
    assert value.grad is not None and value.grad.isfinite().all()


def test_bad_inputs_are_refused_before_any_work() -> None:
    value, shapes, starts, loc, weight = inputs()
    with pytest.raises(ValueError, match='sampling_loc must be'):
        forward(value, shapes, starts, loc[:, :, :, :2], weight)
    with pytest.raises(ValueError, match='attn_weight must be'):
        forward(value, shapes, starts, loc, weight[..., :1])
    with pytest.raises(ValueError, match='level 0 .5x4 from key 0. does not '
                                         'lie within the 10 keys'):
        forward(value[:, :10], shapes, starts, loc, weight)


def test_served_as_mmcv_ext() -> None:
    ext = sys.modules['mmcv._ext']
    assert ext.ms_deform_attn_forward is ms_deform_attn_forward
    assert ext.ms_deform_attn_backward is ms_deform_attn_backward
