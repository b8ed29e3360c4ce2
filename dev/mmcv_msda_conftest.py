"""conftest.py for mmcv's multi-scale deformable attention tests, run on
the CPU against convnext_dense.ops (``dev/run_mmcv_msda_tests.py`` copies it
next to mmcv's unchanged test file).

mmcv's CUDA-only cases call ``.cuda()`` / ``.to('cuda')`` and, through
``MultiScaleDeformableAttnFunction`` or ``MultiScaleDeformableAttention``,
the compiled op. Here mmcv is told that CUDA is available, moving a tensor
or module to CUDA leaves it on the CPU, and in the CUDA cases a tensor says
it is a CUDA one, so mmcv takes the path it takes on a GPU: the op of
``mmcv._ext``, which convnext_dense.ops serves. Every CUDA-only case must
call that op, or it fails.
"""
from __future__ import annotations

import sys

import pytest
import torch

import convnext_dense  # noqa: F401  (installs convnext_dense.ops as mmcv._ext)
import mmcv.utils
from convnext_dense.ops import mmcv_ops_source

if mmcv_ops_source() != 'torchvision':
    raise RuntimeError('this mmcv has its compiled ops: convnext_dense.ops '
                       'would not be what runs')
# read when mmcv's test module and mmcv.ops import it
mmcv.utils.IS_CUDA_AVAILABLE = True
import mmcv.ops.multi_scale_deform_attn as msda  # noqa: E402

msda.IS_CUDA_AVAILABLE = True
CUDA_REASON = 'requires CUDA support'  # mmcv's skipif of the CUDA cases
_calls = {'ms_deform_attn_forward': 0, 'ms_deform_attn_backward': 0}


def _counted(name: str):
    op = getattr(sys.modules['mmcv._ext'], name)

    def call(*args, **kwargs):
        _calls[name] += 1
        return op(*args, **kwargs)
    return call


for _name in _calls:
    setattr(sys.modules['mmcv._ext'], _name, _counted(_name))


def _on_cpu(device):
    if isinstance(device, (str, torch.device)) and \
            torch.device(device).type == 'cuda':
        return torch.device('cpu')
    return device


_tensor_to, _module_to = torch.Tensor.to, torch.nn.Module.to


def _tensor_to_cpu(self, *args, **kwargs):
    args = tuple(_on_cpu(arg) for arg in args)
    if 'device' in kwargs:
        kwargs['device'] = _on_cpu(kwargs['device'])
    return _tensor_to(self, *args, **kwargs)


def _module_to_cpu(self, *args, **kwargs):
    args = tuple(_on_cpu(arg) for arg in args)
    if 'device' in kwargs:
        kwargs['device'] = _on_cpu(kwargs['device'])
    return _module_to(self, *args, **kwargs)


torch.Tensor.cuda = lambda self, *args, **kwargs: self
torch.Tensor.to = _tensor_to_cpu
torch.nn.Module.to = _module_to_cpu


def _cuda_only(item: pytest.Item) -> bool:
    return any(mark.kwargs.get('reason') == CUDA_REASON
               for mark in item.iter_markers('skipif'))


@pytest.fixture(autouse=True)
def cuda_cases_run_the_op(request, monkeypatch):
    """In a CUDA-only case, tensors say they are on CUDA (mmcv's module
    picks the compiled op by ``value.is_cuda``), and the op must run."""
    if not _cuda_only(request.node):
        yield
        return
    monkeypatch.setattr(torch.Tensor, 'is_cuda',
                        property(lambda self: True), raising=False)
    before = _calls['ms_deform_attn_forward']
    yield
    monkeypatch.undo()
    assert _calls['ms_deform_attn_forward'] > before, \
        'the CUDA case did not reach mmcv._ext.ms_deform_attn_forward'
