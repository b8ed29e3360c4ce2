"""ConvNeXt and ConvNeXt-V2 backbones for dense prediction.

Paper: "A ConvNet for the 2020s" (Liu et al., CVPR 2022) and "ConvNeXt V2"
(Woo et al., CVPR 2023). This is an independent implementation that keeps the
authors' module names (``downsample_layers``, ``stages.i.j.{dwconv,norm,
pwconv1,pwconv2,gamma}``, ``norm{i}``) so that their released detection and
segmentation checkpoints load strictly, and so that every other key schema
(timm, mmpretrain, Hugging Face) maps onto it with one pure function
(:mod:`convnext_dense.checkpoint.backbone`).

The layers (layer norm, GRN, block) are in :mod:`.layers`; this file holds
the arch table and the backbone.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmengine.model import BaseModule
from mmengine.model.weight_init import constant_init, trunc_normal_init

from convnext_dense.registry import MODELS

from .layers import Block, LayerNorm2d

# depths and dims of every published variant; V2 variants carry GRN and no
# layer scale. 'test' is a tiny arch that keeps CPU tests fast.
ARCH_SETTINGS: dict[str, dict] = {
    'tiny': dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)),
    'small': dict(depths=(3, 3, 27, 3), dims=(96, 192, 384, 768)),
    'base': dict(depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024)),
    'large': dict(depths=(3, 3, 27, 3), dims=(192, 384, 768, 1536)),
    'xlarge': dict(depths=(3, 3, 27, 3), dims=(256, 512, 1024, 2048)),
    'v2-atto': dict(depths=(2, 2, 6, 2), dims=(40, 80, 160, 320), v2=True),
    'v2-femto': dict(depths=(2, 2, 6, 2), dims=(48, 96, 192, 384), v2=True),
    'v2-pico': dict(depths=(2, 2, 6, 2), dims=(64, 128, 256, 512), v2=True),
    'v2-nano': dict(depths=(2, 2, 8, 2), dims=(80, 160, 320, 640), v2=True),
    'v2-tiny': dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768), v2=True),
    'v2-base': dict(
        depths=(3, 3, 27, 3), dims=(128, 256, 512, 1024), v2=True),
    'v2-large': dict(
        depths=(3, 3, 27, 3), dims=(192, 384, 768, 1536), v2=True),
    'v2-huge': dict(
        depths=(3, 3, 27, 3), dims=(352, 704, 1408, 2816), v2=True),
    'test': dict(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128)),
    'v2-test': dict(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128), v2=True),
}
# the one-letter names users know from the paper
ARCH_ALIASES = {'t': 'tiny', 's': 'small', 'b': 'base', 'l': 'large',
                'xl': 'xlarge'}

STRIDES = (4, 8, 16, 32)
DECAY_TYPES = ('layer_wise', 'stage_wise')


# the keys init_weights reads from dict(type='Pretrained', ...)
PRETRAINED_KEYS = ('type', 'checkpoint', 'prefix', 'allow_partial')


def _check_init_cfg(init_cfg) -> None:
    """Refuse an ``init_cfg`` that :meth:`ConvNeXt.init_weights` would
    ignore: it reads ``None`` or one ``dict(type='Pretrained', ...)``."""
    if init_cfg is None:
        return
    if not isinstance(init_cfg, dict) or init_cfg.get('type') != \
            'Pretrained':
        raise ValueError(
            "ConvNeXt init_cfg must be None (truncated-normal init) or "
            "dict(type='Pretrained', checkpoint=...); got "
            f'{init_cfg!r}, which would be ignored')
    unknown = sorted(set(init_cfg) - set(PRETRAINED_KEYS))
    if unknown or 'checkpoint' not in init_cfg:
        raise ValueError(
            f"ConvNeXt init_cfg dict(type='Pretrained'): needs checkpoint "
            f'and takes only {list(PRETRAINED_KEYS[1:])}; got '
            f'{sorted(init_cfg)}' + (f' ({unknown} would be ignored)'
                                     if unknown else ''))


def _resolve_arch(arch: str | dict) -> dict:
    if isinstance(arch, dict):
        missing = {'depths', 'dims'} - set(arch)
        if missing:
            raise ValueError(
                'a custom arch needs depths and dims; missing '
                f'{sorted(missing)}')
        settings = dict(arch)
    else:
        name = ARCH_ALIASES.get(str(arch).lower(), str(arch).lower())
        name = name.replace('convnextv2-', 'v2-').replace('convnext-', '')
        if name not in ARCH_SETTINGS:
            raise ValueError(
                f'unknown ConvNeXt arch {arch!r}; choose one of '
                f'{sorted(ARCH_SETTINGS) + sorted(ARCH_ALIASES)} or pass '
                'dict(depths=..., dims=...)')
        settings = dict(ARCH_SETTINGS[name])
    depths, dims = tuple(settings['depths']), tuple(settings['dims'])
    if len(depths) != 4 or len(dims) != 4:
        raise ValueError(
            f'ConvNeXt has 4 stages; got depths={depths}, dims={dims}')
    if min(depths) < 1 or min(dims) < 1:
        raise ValueError(f'depths and dims must be positive: {depths}, {dims}')
    return dict(depths=depths, dims=dims, v2=bool(settings.get('v2', False)))


@MODELS.register_module()
class ConvNeXt(BaseModule):
    """ConvNeXt (V1 and V2) backbone emitting features at strides 4/8/16/32.

    Args:
        arch: A name from ``ARCH_SETTINGS`` ('tiny', 'small', 'base',
            'large', 'xlarge', 'v2-atto' ... 'v2-huge', 'test'), a paper
            letter ('t', 's', 'b', 'l', 'xl'), or ``dict(depths=..., dims=...,
            v2=False)``. Defaults to 'tiny'.
        in_channels: Input image channels. Defaults to 3.
        out_indices: Stages whose outputs are returned, any subset of
            0..3, negative indices allowed. Defaults to (0, 1, 2, 3).
        drop_path_rate: Stochastic depth rate of the last block; it grows
            linearly from 0 over all blocks. Defaults to 0.
        layer_scale_init_value: Initial layer-scale value (ignored for V2,
            which has none). Defaults to 1e-6.
        frozen_stages: Number of leading stages (each with the downsample
            layer before it) whose parameters are frozen and kept in eval
            mode. Defaults to 0 (nothing frozen).
        with_cp: Checkpoint each block to trade compute for activation
            memory. Defaults to False.
        use_grn: Force GRN on or off; None follows the arch. Defaults to None.
        init_cfg: mmengine init config. ``dict(type='Pretrained',
            checkpoint=PATH)`` loads any supported checkpoint format through
            :func:`convnext_dense.checkpoint.backbone.load_backbone_checkpoint`;
            add ``allow_partial=True`` to accept a file that leaves backbone
            weights missing. Defaults to None (truncated-normal init).
            Anything else (another init type, a list, an unknown key)
            raises ValueError: it would be ignored.
    """

    def __init__(self,
                 arch: str | dict = 'tiny',
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 drop_path_rate: float = 0.,
                 layer_scale_init_value: float = 1e-6,
                 frozen_stages: int = 0,
                 with_cp: bool = False,
                 use_grn: bool | None = None,
                 init_cfg: dict | None = None) -> None:
        _check_init_cfg(init_cfg)
        super().__init__(init_cfg=init_cfg)
        settings = _resolve_arch(arch)
        self.depths, self.dims = settings['depths'], settings['dims']
        self.use_grn = settings['v2'] if use_grn is None else bool(use_grn)
        if self.use_grn:
            layer_scale_init_value = 0.  # V2 blocks have no layer scale

        if isinstance(out_indices, int):
            out_indices = (out_indices, )
        normalized = []
        for index in out_indices:
            if not -4 <= index < 4:
                raise ValueError(
                    f'out_indices must lie in [-4, 3]; got {index}')
            normalized.append(index % 4)
        if len(set(normalized)) != len(normalized) or not normalized:
            raise ValueError(
                f'out_indices must be distinct and non-empty: {out_indices}')
        self.out_indices = tuple(sorted(normalized))
        if not 0 <= frozen_stages <= 4:
            raise ValueError(f'frozen_stages must lie in [0, 4]: '
                             f'{frozen_stages}')
        self.frozen_stages = frozen_stages
        self.with_cp = with_cp

        # stem: 4x4 conv stride 4 -> LN; then LN -> 2x2 conv stride 2
        self.downsample_layers = nn.ModuleList()
        self.downsample_layers.append(
            nn.Sequential(
                nn.Conv2d(in_channels, self.dims[0], kernel_size=4, stride=4),
                LayerNorm2d(self.dims[0], eps=1e-6)))
        for i in range(1, 4):
            self.downsample_layers.append(
                nn.Sequential(
                    LayerNorm2d(self.dims[i - 1], eps=1e-6),
                    nn.Conv2d(self.dims[i - 1], self.dims[i], kernel_size=2,
                              stride=2)))

        # computed on the CPU so the model also builds under
        # `with torch.device('meta')` (a meta tensor has no values to list)
        rates = torch.linspace(
            0, drop_path_rate, sum(self.depths), device='cpu').tolist()
        self.stages = nn.ModuleList()
        start = 0
        for depth, dim in zip(self.depths, self.dims):
            self.stages.append(
                nn.Sequential(*[
                    Block(dim, rates[start + j], layer_scale_init_value,
                          self.use_grn) for j in range(depth)
                ]))
            start += depth

        # a fresh LayerNorm per output; the classifier's `norm` is not one
        for i in self.out_indices:
            self.add_module(f'norm{i}', LayerNorm2d(self.dims[i], eps=1e-6))
        self._freeze_stages()

    # -- what the backbone says about itself -------------------------------
    @property
    def out_channels(self) -> tuple[int, ...]:
        """Channels of each returned feature map, in output order."""
        return tuple(self.dims[i] for i in self.out_indices)

    @property
    def out_strides(self) -> tuple[int, ...]:
        """Stride of each returned feature map, in output order."""
        return tuple(STRIDES[i] for i in self.out_indices)

    @property
    def num_layers(self) -> int:
        """The layer count N of the official layer-wise decay rule.

        Stage 2 is split into groups of three blocks: N = 3 + ceil(d2 / 3),
        6 for T and 12 for S/B/L/XL.
        """
        return 3 + math.ceil(self.depths[2] / 3)

    def get_layer_id(self, name: str, decay_type: str = 'layer_wise') -> int:
        """Layer id of a backbone parameter for learning-rate decay.

        Args:
            name: Parameter name relative to this module, e.g.
                ``'stages.2.4.pwconv1.weight'``.
            decay_type: 'layer_wise' or 'stage_wise' (docs/reference.md §3).

        Returns:
            An id in 0..num_layers + 1; a parameter of id ``i`` is scaled by
            ``decay_rate ** (num_layers + 1 - i)``. Parameters outside the
            body (the output norms) get ``num_layers + 1``: scale 1.
        """
        if decay_type not in DECAY_TYPES:
            raise ValueError(f'unknown decay_type {decay_type!r}; '
                             f'choose one of {DECAY_TYPES}')
        n = self.num_layers
        parts = name.split('.')
        if parts[0] == 'downsample_layers':
            index = int(parts[1])
            if decay_type == 'stage_wise':
                return 0
            # stem 0; downsample 1 goes with stage 1; downsample 2 alone
            return {0: 0, 1: 2, 2: 3, 3: n}[index]
        if parts[0] == 'stages':
            stage, block = int(parts[1]), int(parts[2])
            if decay_type == 'stage_wise':
                return stage + 1
            return {0: 1, 1: 2, 2: 3 + block // 3, 3: n}[stage]
        return n + 1

    # -- train / freeze ----------------------------------------------------
    def _freeze_stages(self) -> None:
        for i in range(self.frozen_stages):
            for module in (self.downsample_layers[i], self.stages[i]):
                module.eval()
                for param in module.parameters():
                    param.requires_grad = False

    def train(self, mode: bool = True) -> 'ConvNeXt':
        super().train(mode)
        self._freeze_stages()  # frozen stages stay in eval mode
        return self

    # -- weights -----------------------------------------------------------
    def init_weights(self) -> None:
        """Truncated-normal init, or load the checkpoint named in init_cfg."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            # imported here: the loader needs nothing at module import time
            from convnext_dense.checkpoint.backbone import \
                load_backbone_checkpoint
            load_backbone_checkpoint(
                self,
                cfg['checkpoint'],
                prefix=cfg.get('prefix'),
                allow_partial=cfg.get('allow_partial', False))
            self._is_init = True
            return
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                trunc_normal_init(module, std=.02, bias=0)
            elif isinstance(module, nn.LayerNorm):
                constant_init(module, val=1.0, bias=0)
        # not super().init_weights(): on a bare backbone it logs a line per
        # parameter; layer scale and GRN keep their constructor values
        self._is_init = True

    # -- forward -----------------------------------------------------------
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(N, C_in, H, W) -> one (N, C_i, H / s_i, W / s_i) map per index.

        The outputs have the input's memory format. Inside, the network runs
        channels-last either way: an NCHW input becomes channels-last at the
        stem's LayerNorm, whose (N, H, W, C) result is permuted back as a
        view. A channels-last input stays so throughout, with no hidden copy
        back to NCHW; for an NCHW input each output is made contiguous NCHW
        once, because NCHW callers may read raw memory (mmcv's RoIAlign
        returns wrong values on a channels-last map).
        """
        nchw = not (x.is_contiguous(memory_format=torch.channels_last)
                    and not x.is_contiguous())
        outs = []
        for i in range(4):
            x = self.downsample_layers[i](x)
            if self.with_cp and self.training:
                for block in self.stages[i]:
                    x = cp.checkpoint(block, x, use_reentrant=False)
            else:
                x = self.stages[i](x)
            if i in self.out_indices:
                out = getattr(self, f'norm{i}')(x)
                outs.append(out.contiguous() if nchw else out)
        return tuple(outs)
