"""The fast paths on a CUDA device: channels-last, fp16/bf16 autocast, cuDNN.

The CPU suite (test_channels_last.py) checks the same contracts on the CPU's
kernels; here cuDNN's channels-last depthwise convolution and tensor-core
matmuls are the code under test. Skipped without CUDA (CI has none):
``pytest -m gpu`` on a GPU machine.
"""
from __future__ import annotations

import copy

import pytest
import torch

from convnext_dense.models.convnext import ConvNeXt
from helpers.random_weights import randomize_

from .test_channels_last import images, is_channels_last

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(),
                       reason='needs a CUDA device'),
]
CL = torch.channels_last


@pytest.fixture
def models(monkeypatch):
    """ConvNeXt-T on the GPU in fp32 NCHW and in channels-last (TF32 off,
    so that fp32 means fp32)."""
    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    ref = randomize_(ConvNeXt('tiny'), seed=1).cuda().eval()
    return ref, copy.deepcopy(ref).to(memory_format=CL)


def test_channels_last_fp32_equals_nchw(models) -> None:
    ref, cl = models
    x = images((2, 3, 224, 224)).cuda()
    with torch.no_grad():
        expected = ref(x)
        outs = cl(x.contiguous(memory_format=CL))
    for out, exp in zip(outs, expected):
        assert is_channels_last(out)
        torch.testing.assert_close(out, exp, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_autocast_channels_last_stays_close_to_fp32(models, dtype) -> None:
    ref, cl = models
    x = images((2, 3, 224, 224)).cuda()
    with torch.no_grad():
        expected = ref(x)
        with torch.autocast('cuda', dtype=dtype):
            outs = cl(x.contiguous(memory_format=CL))
    for out, exp in zip(outs, expected):
        assert is_channels_last(out)
        # relative to the output's scale: fp16 keeps 10 mantissa bits,
        # bf16 7, over 18 blocks
        err = (out.float() - exp).abs().max() / exp.abs().max()
        assert err < (2e-2 if dtype == torch.float16 else 5e-2), err.item()


def test_channels_last_gradients_equal_nchw(models) -> None:
    ref, cl = models
    ref.train()
    cl.train()
    x = images((2, 3, 128, 128)).cuda()
    for model, inp in ((ref, x), (cl, x.contiguous(memory_format=CL))):
        model.zero_grad()
        sum(out.square().mean() for out in model(inp)).backward()
    for (name, a), b in zip(ref.named_parameters(), cl.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-3, atol=1e-4,
                                   msg=name)


def test_inductor_compiled_channels_last_equals_eager(monkeypatch) -> None:
    """Inductor's Triton kernels on the GPU, dynamic shapes: the 'test' arch
    keeps the compilation short; two sizes share the graph."""
    from convnext_dense.engine.channels_last import compile_backbone

    monkeypatch.setattr(torch.backends.cuda.matmul, 'allow_tf32', False)
    monkeypatch.setattr(torch.backends.cudnn, 'allow_tf32', False)
    ref = randomize_(ConvNeXt('test'), seed=8).cuda().eval()
    model = copy.deepcopy(ref).to(memory_format=CL)
    compile_backbone(model)
    with torch.no_grad():
        for hw in ((64, 96), (128, 128)):
            x = images((2, 3, *hw)).cuda()
            for out, exp in zip(model(x.contiguous(memory_format=CL)),
                                ref(x)):
                torch.testing.assert_close(out, exp, rtol=1e-4, atol=1e-4)
