"""Multi-scale deformable attention of convnext_dense.ops on a CUDA device.

On a GPU, mmcv's ``MultiScaleDeformableAttention`` calls the op of
``mmcv._ext`` (the stand-in on mmcv-lite) where the CPU runs mmcv's
pure-PyTorch function: here the two are compared on CUDA, forward and
gradients, and the module on CUDA with the same module on the CPU. Skipped
without CUDA (CI has none): ``pytest -m gpu`` on a GPU machine
(``dev/gpu_check.sh``).
"""
from __future__ import annotations

import copy
import sys

import pytest
import torch

import convnext_dense  # noqa: F401  (installs the ops)
from convnext_dense.ops import mmcv_ops_source
from mmcv.ops.multi_scale_deform_attn import (  # noqa: E402
    MultiScaleDeformableAttention, MultiScaleDeformableAttnFunction,
    multi_scale_deformable_attn_pytorch)

from .test_ms_deform_attn import inputs

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason='needs a CUDA device'),
    pytest.mark.skipif(mmcv_ops_source() != 'torchvision',
                       reason='mmcv has its compiled ops here'),
]
CUDA = torch.device('cuda')


@pytest.fixture
def op_calls(monkeypatch) -> list[str]:
    """The names of the ``mmcv._ext`` ops called, in order."""
    ext, calls = sys.modules['mmcv._ext'], []
    for name in ('ms_deform_attn_forward', 'ms_deform_attn_backward'):
        def spy(*args, _op=getattr(ext, name), _name=name, **kwargs):
            calls.append(_name)
            return _op(*args, **kwargs)
        monkeypatch.setattr(ext, name, spy)
    return calls


def _run(attend, value, loc, weight, grad_out):
    leaves = [t.detach().clone().requires_grad_() for t in (value, loc,
                                                            weight)]
    out = attend(*leaves)
    out.backward(grad_out)
    return [out.detach()] + [leaf.grad for leaf in leaves]


# dtype -> (rtol, atol relative to the largest value) of the op against
# mmcv's function on CUDA, which runs on the same values in float32 where
# the dtype is float16 (as the op computes it: then the op's result is
# rounded once)
TOLERANCES = {torch.float64: (1e-12, 1e-14), torch.float32: (1e-5, 1e-6),
              torch.float16: (2 ** -10, 2 ** -11)}


@pytest.mark.parametrize('dtype', list(TOLERANCES))
def test_op_equals_mmcv_pytorch_on_cuda(dtype, op_calls) -> None:
    value, shapes, starts, loc, weight = (
        t.to(CUDA) for t in inputs(batch=4, heads=4, channels=32, queries=50,
                                   points=4, shapes=((16, 12), (8, 6),
                                                     (4, 3), (1, 1))))
    value, loc, weight = (t.to(dtype) for t in (value, loc, weight))
    grad_out = torch.randn(4, 50, 128, device=CUDA, dtype=dtype)
    ours = _run(lambda v, lc, w: MultiScaleDeformableAttnFunction.apply(
        v, shapes, starts, lc, w, 2 if dtype == torch.float64 else 64),
        value, loc, weight, grad_out)
    assert op_calls == ['ms_deform_attn_forward', 'ms_deform_attn_backward']
    wide = torch.float32 if dtype == torch.float16 else dtype
    expected = _run(lambda v, lc, w: multi_scale_deformable_attn_pytorch(
        v, shapes, lc, w), value.to(wide), loc.to(wide), weight.to(wide),
        grad_out.to(wide))
    rtol, atol = TOLERANCES[dtype]
    for name, got, want in zip(('output', 'value', 'loc', 'weight'), ours,
                               expected):
        assert got.dtype == dtype
        torch.testing.assert_close(got.double(), want.double(), rtol=rtol,
                                   atol=atol * want.abs().max().item(),
                                   msg=lambda text, name=name: f'{name}: '
                                   + text)


def _module_step(module, device, query, value, reference, shapes, starts):
    module = module.to(device)
    out = module(query.to(device), value=value.to(device),
                 reference_points=reference.to(device),
                 spatial_shapes=shapes.to(device),
                 level_start_index=starts.to(device))
    out.square().sum().backward()
    return out.detach().cpu(), {name: p.grad.cpu() for name, p in
                                module.named_parameters()}


def test_module_on_cuda_runs_the_op_and_equals_the_cpu(op_calls) -> None:
    """float64, so that the two devices agree to rounding."""
    torch.manual_seed(0)
    module = MultiScaleDeformableAttention(
        embed_dims=64, num_heads=4, num_levels=3, num_points=4,
        dropout=0., batch_first=True).double()
    shapes = torch.tensor([[12, 10], [6, 5], [3, 3]])
    starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    keys = int(shapes.prod(1).sum())
    query = torch.randn(2, 30, 64, dtype=torch.float64)
    value = torch.randn(2, keys, 64, dtype=torch.float64)
    reference = torch.rand(2, 30, 3, 2, dtype=torch.float64)
    args = (query, value, reference, shapes, starts)
    cpu_out, cpu_grads = _module_step(copy.deepcopy(module), 'cpu', *args)
    assert op_calls == []  # the CPU runs mmcv's own function
    cuda_out, cuda_grads = _module_step(module, CUDA, *args)
    assert op_calls == ['ms_deform_attn_forward', 'ms_deform_attn_backward']
    torch.testing.assert_close(cuda_out, cpu_out, rtol=1e-10, atol=1e-12)
    for name, grad in cpu_grads.items():
        torch.testing.assert_close(cuda_grads[name], grad, rtol=1e-9,
                                   atol=1e-11, msg=name)


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_module_trains_under_cuda_autocast(dtype, op_calls) -> None:
    """A linear layer hands the op a reduced-precision value; mmcv's
    compiled kernel refuses bfloat16, the stand-in takes it too."""
    torch.manual_seed(0)
    module = MultiScaleDeformableAttention(
        embed_dims=32, num_heads=4, num_levels=2, num_points=2, dropout=0.,
        batch_first=True).to(CUDA)
    shapes = torch.tensor([[8, 8], [4, 4]], device=CUDA)
    starts = torch.tensor([0, 64], device=CUDA)
    query = torch.randn(2, 20, 32, device=CUDA)
    reference = torch.rand(2, 20, 2, 2, device=CUDA)
    with torch.autocast('cuda', dtype=dtype):
        out = module(query, value=torch.randn(2, 80, 32, device=CUDA),
                     reference_points=reference, spatial_shapes=shapes,
                     level_start_index=starts)
    out.float().square().mean().backward()
    assert op_calls == ['ms_deform_attn_forward', 'ms_deform_attn_backward']
    assert out.isfinite().all()
    assert all(p.grad.isfinite().all() for p in module.parameters())
