"""The counter (convnext_dense/analysis/complexity.py).

mmengine's counter is checked against closed-form counts of ConvNeXt (every
parameter; every multiply-add of convolutions, linear layers and layer
norms) and against the paper's ConvNeXt-T classifier (28.6M parameters,
4.5 GMACs at 224).
"""
from __future__ import annotations

import pytest

from convnext_dense.analysis.complexity import classifier_complexity
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
