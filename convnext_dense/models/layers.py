"""The layers of the ConvNeXt backbone (:mod:`convnext_dense.models.convnext`):
channels-first layer norm, GRN (ConvNeXt-V2) and the block, with the
authors' module names.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def match_grad_strides(param: nn.Parameter):
    """A gradient hook giving ``param``'s gradient ``param``'s strides where
    only the strides of size-1 dimensions differ (the same memory).

    A depthwise weight (C, 1, 7, 7) fed channels-last activations gets its
    gradient with stride 1 on the size-1 dimension, (49, 1, 7, 1), against
    the weight's (49, 49, 7, 1): the same bytes, but DDP compares strides and
    warns "Grad strides do not match bucket view strides" in every
    distributed run on a CPU. Restriding such a gradient is free.
    """
    def hook(grad: torch.Tensor) -> torch.Tensor:
        want = param.stride()
        if grad.stride() == want or grad.shape != param.shape:
            return grad
        if all(g == w for g, w, n in zip(grad.stride(), want, grad.shape)
               if n > 1):
            return grad.as_strided(grad.shape, want)
        return grad
    return hook


def layer_norm_2d(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """Layer-normalise the channels of an (N, C, H, W) tensor.

    The permutes are free views: on a channels-last input the (N, H, W, C)
    view is contiguous, and the result is permuted back without a copy, so
    the memory format survives. (A ``.contiguous()`` here would silently
    convert every output back to NCHW.)
    """
    x = x.permute(0, 2, 3, 1)  # (N, H, W, C)
    x = F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias,
                     norm.eps)
    return x.permute(0, 3, 1, 2)  # (N, C, H, W)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an (N, C, H, W) tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layer_norm_2d(x, self)


class GRN(nn.Module):
    """Global response normalisation of ConvNeXt-V2, on (N, H, W, C) input.

    The statistics are computed in float32 whatever the input dtype, the
    device or autocast: the sum of squares over a feature map overflows
    half precision (a 200x336 map of magnitude 5 sums to 1.7e6; fp16 ends at
    65504), and an inf there turns the whole output into NaN
    (docs/reference.md §7; ``tests/models/test_convnext.py``). The output
    has the input's dtype. Parameters keep the official (1, 1, 1, C) shape;
    the checkpoint mapper reshapes the 1-D tensors of timm and mmpretrain
    files.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.onnx.is_in_onnx_export():
            return self._forward_onnx(x)
        # L2 norm over the spatial dims, per sample and channel, accumulated
        # and returned in float32 (dtype= casts inside the reduction, so no
        # float32 copy of x is kept): (N, 1, 1, C)
        gx = torch.linalg.vector_norm(x, ord=2, dim=(1, 2), keepdim=True,
                                      dtype=torch.float32)
        nx = gx / (gx.mean(dim=-1, keepdim=True) + self.eps)
        # gamma * (x * nx) + beta + x == x * (1 + gamma * nx) + beta: one
        # pass over x; the per-channel scale is formed in float32
        scale = torch.addcmul(torch.ones_like(nx), self.gamma.float(), nx)
        return torch.addcmul(self.beta.to(x.dtype), x, scale.to(x.dtype))

    def _forward_onnx(self, x: torch.Tensor) -> torch.Tensor:
        """The same arithmetic in ops whose ONNX export keeps the dtypes.

        PyTorch's TorchScript exporter applies ``vector_norm``'s ``dtype=``
        as a Cast *after* the reduction (``ReduceL2`` would sum the squares
        of an fp16 graph in fp16), and exports ``addcmul`` with a float32
        constant that promotes everything after it to float32. Here the
        Cast comes first, and the output is a plain Mul and Add in the input
        dtype (``tests/deploy/test_onnx_export.py``, fp16 export).
        """
        gx = torch.linalg.vector_norm(x.float(), ord=2, dim=(1, 2),
                                      keepdim=True)  # (N, 1, 1, C), float32
        nx = gx / (gx.mean(dim=-1, keepdim=True) + self.eps)
        scale = 1 + self.gamma.float() * nx
        return x * scale.to(x.dtype) + self.beta.to(x.dtype)


class Block(nn.Module):
    """One ConvNeXt block.

    dwconv 7x7 -> LayerNorm -> Linear(C, 4C) -> GELU [-> GRN] -> Linear(4C, C)
    [-> layer scale] -> stochastic depth -> residual add. The pointwise layers
    are Linear on an (N, H, W, C) view, as in the official code.

    Args:
        dim: Channels in and out.
        drop_path: Stochastic depth rate of this block. Defaults to 0.
        layer_scale_init_value: Initial layer-scale value; 0 or None disables
            layer scale. Defaults to 1e-6.
        use_grn: Add GRN after GELU (ConvNeXt-V2). Defaults to False.
    """

    def __init__(self,
                 dim: int,
                 drop_path: float = 0.,
                 layer_scale_init_value: float | None = 1e-6,
                 use_grn: bool = False) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.dwconv.weight.register_hook(match_grad_strides(self.dwconv.weight))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = GRN(4 * dim) if use_grn else None
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = (
            nn.Parameter(layer_scale_init_value * torch.ones(dim))
            if layer_scale_init_value else None)
        # stochastic depth: the block draws its mask itself
        # (_drop_path_mask), so that it can fold it into the layer scale
        self.drop_prob = float(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x  # (N, C, H, W)
        x = self.dwconv(x)
        x = x.permute(0, 2, 3, 1)  # (N, H, W, C), free on channels-last
        x = self.pwconv1(self.norm(x))  # (N, H, W, 4C)
        x = self.act(x)
        if self.grn is not None:
            x = self.grn(x)
        x = self.pwconv2(x)  # (N, H, W, C)
        x = x.permute(0, 3, 1, 2)  # (N, C, H, W)
        drop = self.training and self.drop_prob > 0
        if self.gamma is None:
            if drop:
                x = x * self._drop_path_mask(x)  # (N, 1, 1, 1) mask
            return shortcut + x
        # layer scale, drop path and residual in one pass over the memory
        # (addcmul) instead of three; the block is memory-bound outside its
        # two matmuls
        scale = self.gamma.view(-1, 1, 1)  # (C, 1, 1)
        if not self.training and torch.is_autocast_enabled(x.device.type):
            # inference under autocast: the float32 gamma would promote the
            # residual stream to float32 after every block, and the next
            # block's convolution would cast it back; in bf16 the stream
            # stays bf16 (tests/models/test_bf16_parity.py: the error to
            # fp32 grows from 0.58 to 0.60 % on ConvNeXt-T). Training keeps
            # the float32 stream, as the official code does under AMP.
            scale = scale.to(x.dtype)
        if torch.onnx.is_in_onnx_export():
            # the exporter's addcmul adds a float32 constant, which would
            # promote an fp16 graph to float32 from here on
            return shortcut + x * scale
        if drop:
            scale = scale * self._drop_path_mask(x)  # (N, C, 1, 1)
        return torch.addcmul(shortcut, x, scale)

    def _drop_path_mask(self, x: torch.Tensor) -> torch.Tensor:
        """The (N, 1, 1, 1) stochastic-depth mask for this batch.

        Drawn exactly as timm's ``DropPath`` draws it (one Bernoulli per
        sample, divided by the keep probability), so a seeded run drops the
        same samples as the official ``drop_path(x * gamma)``.
        """
        keep_prob = 1 - self.drop_prob
        mask = x.new_empty((x.shape[0], 1, 1, 1)).bernoulli_(keep_prob)
        if keep_prob > 0:
            mask.div_(keep_prob)
        return mask

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob:g}'
