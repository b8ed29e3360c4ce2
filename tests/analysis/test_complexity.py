"""The counter (convnext_dense/analysis/complexity.py).

mmengine's counter is checked against closed-form counts of ConvNeXt (every
parameter; every multiply-add of convolutions, linear layers and layer
norms) and against the paper's ConvNeXt-T classifier (28.6M parameters,
4.5 GMACs at 224).
"""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from convnext_dense.analysis.complexity import (classifier_complexity,
                                                count_complexity,
                                                shapes_only)
from convnext_dense.analysis.complexity_report import PAPER_CLASSIFIER
from convnext_dense.models.convnext import ARCH_SETTINGS


# ---------------------------------------------------------------------------
# closed forms of the ConvNeXt classifier
# ---------------------------------------------------------------------------

def closed_form_classifier(depths, dims, size: int, num_classes: int = 1000
                           ) -> dict[str, int]:
    """Parameters and per-operator multiply-adds of a ConvNeXt classifier
    on one size x size image, derived from the architecture
    (docs/reference.md §1). Layer norms count 5 per element, mmengine's rule
    for an affine norm."""
    params = conv = linear = norm_elements = 0
    res = size // 4
    # stem: 4x4 conv stride 4, then LN
    params += 3 * 16 * dims[0] + dims[0] + 2 * dims[0]
    conv += res * res * dims[0] * 3 * 16
    norm_elements += res * res * dims[0]
    for i, (depth, dim) in enumerate(zip(depths, dims)):
        if i > 0:  # LN, then 2x2 conv stride 2
            prev = dims[i - 1]
            params += 2 * prev + 4 * prev * dim + dim
            norm_elements += res * res * prev
            res //= 2
            conv += res * res * dim * prev * 4
        # block: dwconv 7x7 (+bias), LN, Linear(d, 4d), Linear(4d, d), gamma
        params += depth * (49 * dim + dim + 2 * dim + 4 * dim * dim +
                           4 * dim + 4 * dim * dim + dim + dim)
        conv += depth * res * res * 49 * dim
        linear += depth * res * res * 8 * dim * dim
        norm_elements += depth * res * res * dim
    # final LN on the pooled (1, C) vector, then the linear head
    params += 2 * dims[-1] + dims[-1] * num_classes + num_classes
    norm_elements += dims[-1]
    linear += dims[-1] * num_classes
    return dict(params=params, conv=conv, linear=linear,
                layer_norm=5 * norm_elements)


@pytest.mark.parametrize('arch,size', [('test', 64), ('tiny', 224),
                                       ('base', 96)])
def test_counter_equals_closed_form(arch, size):
    settings = ARCH_SETTINGS[arch]
    expected = closed_form_classifier(settings['depths'], settings['dims'],
                                      size)
    measured = classifier_complexity(arch, size)
    assert measured.params == expected['params']
    assert measured.by_operator == {
        key: expected[key] for key in ('conv', 'linear', 'layer_norm')
    }
    assert measured.flops == sum(measured.by_operator.values())


def test_tiny_classifier_matches_paper():
    """ConvNeXt-T at 224: 28.6M parameters and 4.5 G multiply-adds."""
    paper = PAPER_CLASSIFIER['tiny']
    measured = classifier_complexity('tiny', 224)
    assert measured.params == 28_589_128  # timm's convnext_tiny, exactly
    assert measured.params / 1e6 == pytest.approx(paper.params_m, rel=0.02)
    assert measured.flops / 1e9 == pytest.approx(paper.gflops, rel=0.02)


class Products(nn.Module):
    """Every kind of product that :func:`shapes_only` stubs: convolutions
    (strided, padded, dilated, grouped, 1-D, transposed with output
    padding), linear layers on 2-D and 3-D inputs, 4-D matmul, einsum,
    bmm, baddbmm and addmm."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2,
                              groups=2)
        self.deconv = nn.ConvTranspose2d(6, 4, 3, stride=2, padding=1,
                                         output_padding=1)
        self.conv1d = nn.Conv1d(4, 5, 5, padding=1)
        self.linear = nn.Linear(7, 3)

    def forward(self, x: torch.Tensor) -> tuple:
        y = self.conv(x)  # (1, 6, 5, 7)
        z = self.deconv(y)  # (1, 4, 10, 14)
        w = self.conv1d(z.flatten(2))  # (1, 5, 138)
        q = y.flatten(2).transpose(1, 2)  # (1, 35, 6)
        return (y, z, w,
                self.linear(x[0, 0]),  # 2-D: addmm
                self.linear(x[:, :, 0]),  # 3-D
                q[None] @ q[None].transpose(-1, -2),  # matmul, 4-D
                torch.bmm(q, q.transpose(1, 2)),
                torch.einsum('bnc,bmc->bnm', q, q),
                torch.baddbmm(q[:, :5, :5], q[:, :5], q[:, :5].transpose(
                    1, 2)),
                torch.addmm(q[0, :2, :2], q[0, :2], q[0, :2].T),
                F.linear(q[0], torch.ones(2, 6)))


def test_shapes_only_gives_the_computed_shapes_and_counts():
    torch.manual_seed(0)
    model, x = Products().eval(), torch.randn(1, 4, 9, 7)
    with torch.no_grad():
        computed = model(x)
        with shapes_only():
            stubbed = model(x)
    assert [t.shape for t in stubbed] == [t.shape for t in computed]
    assert [t.dtype for t in stubbed] == [t.dtype for t in computed]
    assert all(not t.any() for t in stubbed[:3])  # nothing computed
    assert computed[0].any()
    shapes = count_complexity(model, (x, ), (7, 9))
    assert shapes == count_complexity(model, (x, ), (7, 9), compute=True)
    assert set(shapes.by_operator) == {'conv', 'linear', 'matmul', 'einsum',
                                       'bmm', 'addmm'}


def test_shapes_only_restores_the_kernels():
    x, conv = torch.ones(1, 1, 3, 3), nn.Conv2d(1, 1, 3)
    before = conv(x)
    with pytest.raises(RuntimeError, match='inside'):
        with shapes_only():
            assert not conv(x).any()
            raise RuntimeError('inside')
    assert torch.equal(conv(x), before)
    assert torch.equal(torch.ones(2, 2) @ torch.ones(2, 2),
                       torch.full((2, 2), 2.))
