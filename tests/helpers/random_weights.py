"""Random weights for tests that compare two computations of one model.

One helper for every test folder (``helpers.random_weights``): a copy in
tests/engine once drifted from tests/models and left GRN at its zero init.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn


def randomize_(module: nn.Module, seed: int) -> nn.Module:
    """Fill every parameter with non-trivial random values, in place.

    Matrices and kernels get N(0, 1/fan_in) so activations stay O(1); 1-D
    norm weights 1 + N(0, 0.2^2); every other 1-D tensor (biases, layer
    scale, GRN gamma/beta, whatever its shape) N(0, 0.3^2), so none of
    them is 0 or 1 (layer scale O(0.3), not 1e-6: every block's branch
    shows in the outputs) and a mix-up between two of them shows.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in module.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            if 'grn' in name:
                param.copy_(0.3 * noise)
            elif param.ndim > 1:
                param.copy_(noise / math.sqrt(param[0].numel()))
            elif 'norm' in name and name.endswith('weight'):
                param.copy_(1 + 0.2 * noise)
            else:
                param.copy_(0.3 * noise)
    return module
