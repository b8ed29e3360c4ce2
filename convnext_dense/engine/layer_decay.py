"""Layer-wise learning-rate decay for fine-tuning a ConvNeXt dense model.

The official rule (docs/reference.md §3): every parameter of the whole model
gets a layer id in 0..N+1, N = ``num_layers``, and trains at

    lr = base_lr * decay_rate ** (N + 1 - id)

so the stem learns slowest and the neck and heads (id N + 1) at the base rate.
The backbone owns the id rule (``backbone.get_layer_id(name, decay_type)`` and
``backbone.num_layers``, see :class:`convnext_dense.models.ConvNeXt`); this
constructor only applies rates, so any backbone exposing the two works.
Without mmengine's Runner, :func:`layer_decay_param_groups` gives the same
param groups to any PyTorch optimizer.

Weight decay is 0 for every 1-D parameter (norms, layer scale), every bias,
and the GRN gamma/beta of ConvNeXt-V2 (kept 4-D, (1, 1, 1, C), as in the
official files); all others use the optimizer's weight decay.

Heads with their own multipliers (Mask2Former, DINO: the backbone at 0.1 x
the base lr, no weight decay on query and level embeddings) add
``custom_keys`` as mmengine's default constructor reads them: a parameter
takes the ``lr_mult`` and ``decay_mult`` of the longest key contained in its
name, on top of its layer scale and the rule above.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch.nn as nn
from mmengine.dist import is_main_process
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import OPTIM_WRAPPERS, OPTIMIZERS

from convnext_dense.models.convnext import DECAY_TYPES
from convnext_dense.registry import OPTIM_WRAPPER_CONSTRUCTORS

# the paramwise_cfg keys this constructor reads; mmengine's default
# constructor ignores unknown keys, so these alone would do nothing there
DECAY_KEYS = ('decay_rate', 'decay_type', 'num_layers')
# ... and what a custom key may set (mmengine's names)
MULT_KEYS = ('lr_mult', 'decay_mult')
# modules whose parameters never decay, whatever their shape
NO_DECAY_MODULES = ('grn', )


def _no_weight_decay(name: str, ndim: int) -> bool:
    """Whether parameter ``name`` with ``ndim`` dims is exempt from decay."""
    *modules, leaf = name.split('.')
    return (ndim <= 1 or leaf == 'bias'
            or any(module in NO_DECAY_MODULES for module in modules))


def check_decay_settings(decay_rate: float, decay_type: str) -> float:
    """``decay_rate`` as a float, after refusing a non-positive rate or an
    unknown decay type."""
    if not float(decay_rate) > 0:
        raise ValueError(f'decay_rate must be positive; got {decay_rate!r}')
    if decay_type not in DECAY_TYPES:
        raise ValueError(f'unknown decay_type {decay_type!r}; '
                         f'choose one of {DECAY_TYPES}')
    return float(decay_rate)


def check_custom_keys(custom_keys: Mapping | None
                      ) -> dict[str, tuple[float, float]]:
    """``custom_keys`` as {key: (lr_mult, decay_mult)}, longest key first
    (ties alphabetical, as mmengine orders them), after refusing a setting
    other than ``lr_mult``/``decay_mult`` or a negative multiplier."""
    checked = {}
    for key in sorted(sorted(custom_keys or {}), key=len, reverse=True):
        mults = dict(custom_keys[key])
        unknown = sorted(set(mults) - set(MULT_KEYS))
        if unknown:
            raise ValueError(f'custom_keys[{key!r}] may set only {MULT_KEYS}; '
                             f'got {unknown}')
        lr_mult = float(mults.get('lr_mult', 1.))
        decay_mult = float(mults.get('decay_mult', 1.))
        if lr_mult < 0 or decay_mult < 0:
            raise ValueError(f'custom_keys[{key!r}]: multipliers must not be '
                             f'negative; got {mults}')
        checked[key] = (lr_mult, decay_mult)
    return checked


def backbone_layer_ids(model: nn.Module, decay_type: str,
                       num_layers: int | None = None
                       ) -> tuple[dict[int, int], int]:
    """Ask ``model.backbone`` for the layer id of each of its parameters.

    Args:
        model: A model with a ``backbone`` that has ``get_layer_id(name,
            decay_type)`` and ``num_layers`` (as
            :class:`convnext_dense.models.ConvNeXt`).
        decay_type: 'layer_wise' or 'stage_wise'.
        num_layers: If given, it must equal the backbone's. Defaults to
            None (the backbone's).

    Returns:
        A map from ``id(parameter)`` to layer id, and num_layers.
    """
    backbone = getattr(model, 'backbone', None)
    if not (isinstance(backbone, nn.Module)
            and callable(getattr(backbone, 'get_layer_id', None))
            and hasattr(backbone, 'num_layers')):
        found = ('no backbone' if backbone is None else
                 f'a backbone {type(backbone).__name__} without it')
        raise TypeError(
            'LayerDecayOptimizerConstructor needs model.backbone with a '
            'get_layer_id(name, decay_type) method and a num_layers '
            f'attribute (as convnext_dense.ConvNeXt has); '
            f'{type(model).__name__} has {found}')

    backbone_num_layers = int(backbone.num_layers)
    if num_layers is not None and num_layers != backbone_num_layers:
        depths = getattr(backbone, 'depths', None)
        detail = (f' with depths {tuple(depths)}'
                  if depths is not None else '')
        raise ValueError(
            f'paramwise_cfg.num_layers={num_layers} does not match '
            f'the backbone {type(backbone).__name__}{detail}, which has '
            f'num_layers={backbone_num_layers}. For ConvNeXt, num_layers = 3 '
            '+ ceil(depth of stage 2 / 3): 6 for T (9 blocks), 12 for '
            'S/B/L/XL (27 blocks). Fix it or leave it out to derive it.')
    num_layers = backbone_num_layers

    layer_ids = {}
    for name, param in backbone.named_parameters():
        layer_id = backbone.get_layer_id(name, decay_type)
        if not 0 <= layer_id <= num_layers + 1:
            raise ValueError(
                f'{type(backbone).__name__}.get_layer_id returned '
                f'{layer_id} for {name!r}; ids must lie in '
                f'0..num_layers + 1 = 0..{num_layers + 1}')
        layer_ids[id(param)] = layer_id
    return layer_ids, num_layers


def layer_decay_param_groups(model: nn.Module,
                             base_lr: float,
                             weight_decay: float,
                             decay_rate: float,
                             decay_type: str = 'layer_wise',
                             num_layers: int | None = None,
                             with_names: bool = False,
                             custom_keys: Mapping | None = None
                             ) -> list[dict[str, Any]]:
    """The layer-decayed param groups, for any optimizer, without a Runner.

    Exactly the groups :class:`LayerDecayOptimizerConstructor` builds (it
    calls this), so plain PyTorch gets the same training::

        groups = layer_decay_param_groups(model, base_lr=2e-4,
                                          weight_decay=0.05, decay_rate=0.7)
        optimizer = torch.optim.AdamW(groups, lr=2e-4)

    Trainable parameters are grouped by (layer id, weight decay, lr
    multiplier), sorted by layer id, the decayed group first, then the
    faster one; frozen ones (``requires_grad=False``)
    are left out. Everything outside the backbone (neck, heads) trains at
    the base lr (id N + 1).

    Args:
        model: The detector or segmentor, possibly wrapped (DDP or
            MMDistributedDataParallel: ``.module`` is unwrapped).
        base_lr: The lr of the neck and heads.
        weight_decay: The weight decay of every parameter that decays.
        decay_rate: Per-layer lr factor, positive.
        decay_type: 'layer_wise' or 'stage_wise'. Defaults to 'layer_wise'.
        num_layers: If given, must equal the backbone's. Defaults to None.
        with_names: Also give each group ``param_names``. Defaults to False
            (optimizer checkpoints then hold no names).
        custom_keys: {name substring: dict(lr_mult=..., decay_mult=...)};
            the longest key in a parameter's name multiplies its lr and
            weight decay. Every key must match a trainable parameter.
            Defaults to None (no multipliers).

    Returns:
        Param groups with ``params``, ``lr``, ``weight_decay``,
        ``lr_scale`` and ``layer_id`` (and ``param_names``).
    """
    decay_rate = check_decay_settings(decay_rate, decay_type)
    model = getattr(model, 'module', model)
    layer_ids, num_layers = backbone_layer_ids(model, decay_type, num_layers)

    mults = check_custom_keys(custom_keys)
    unmatched = set(mults)
    groups: dict[tuple[int, float, float], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        layer_id = layer_ids.get(id(param), num_layers + 1)
        # the longest custom key in the name, as mmengine picks it
        key = next((key for key in mults if key in name), None)
        lr_mult, decay_mult = mults.get(key, (1., 1.))
        unmatched.discard(key)
        decay = (0. if _no_weight_decay(name, param.ndim) else
                 weight_decay * decay_mult)
        key = (layer_id, decay, lr_mult)
        if key not in groups:
            lr_scale = decay_rate**(num_layers + 1 - layer_id) * lr_mult
            groups[key] = dict(
                params=[],
                param_names=[],
                lr=base_lr * lr_scale,
                weight_decay=decay,
                lr_scale=lr_scale,
                layer_id=layer_id)
        groups[key]['params'].append(param)
        groups[key]['param_names'].append(name)
    if unmatched:
        raise ValueError(f'custom_keys {sorted(unmatched)} match no '
                         f'trainable parameter of {type(model).__name__}')
    ordered = [groups[key] for key in sorted(
        groups, key=lambda key: (key[0], -key[1], -key[2]))]
    if not with_names:
        for group in ordered:
            del group['param_names']
    return ordered


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """Optimizer-wrapper constructor applying layer-wise learning-rate decay.

    Configs select it inside ``optim_wrapper``::

        optim_wrapper = dict(
            type='OptimWrapper',
            constructor='convnext_dense.LayerDecayOptimizerConstructor',
            optimizer=dict(type='AdamW', lr=2e-4, weight_decay=0.05),
            paramwise_cfg=dict(decay_rate=0.7, decay_type='layer_wise',
                               num_layers=6))

    Parameters are grouped by (layer id, weight decay, lr multiplier): one
    optimizer param group each, holding ``lr``, ``weight_decay``,
    ``lr_scale`` and ``layer_id``. mmengine's parameter schedulers scale
    every group's ``lr`` relative to its initial value, so warm-up and steps
    keep the ratios.
    Frozen parameters (``requires_grad=False``) are left out. One summary
    table is logged on rank 0.

    Args:
        optim_wrapper_cfg: The ``optim_wrapper`` config without
            ``constructor`` and ``paramwise_cfg``; its optimizer must set
            ``lr`` and ``weight_decay``.
        paramwise_cfg: ``decay_rate`` (required, positive), ``decay_type``
            ('layer_wise' or 'stage_wise'; defaults to 'layer_wise') and
            ``num_layers`` (defaults to the backbone's; if given, it must
            equal it); optionally ``custom_keys`` (see
            :func:`layer_decay_param_groups`). No other keys. Defaults to
            None, which is an error:
            without a decay rate there is nothing to construct.
    """

    def __init__(self,
                 optim_wrapper_cfg: dict,
                 paramwise_cfg: dict | None = None) -> None:
        super().__init__(optim_wrapper_cfg, paramwise_cfg)
        cfg = self.paramwise_cfg
        known = DECAY_KEYS + ('custom_keys', )
        unknown = sorted(set(cfg) - set(known))
        if unknown:
            raise ValueError(
                f'LayerDecayOptimizerConstructor reads only {known} '
                f'from paramwise_cfg; got unsupported keys {unknown}')
        if 'decay_rate' not in cfg:
            raise ValueError(
                'LayerDecayOptimizerConstructor needs paramwise_cfg.'
                'decay_rate (e.g. 0.7 for Cascade Mask R-CNN T, 0.9 for '
                'UperNet)')
        self.decay_type = cfg.get('decay_type', 'layer_wise')
        self.decay_rate = check_decay_settings(cfg['decay_rate'],
                                               self.decay_type)
        self.num_layers = cfg.get('num_layers')
        self.custom_keys = cfg.get('custom_keys')
        check_custom_keys(self.custom_keys)  # before any model is built
        if self.base_lr is None or self.base_wd is None:
            raise ValueError(
                'layer decay needs optimizer.lr and optimizer.weight_decay '
                'set explicitly in the config; got '
                f'lr={self.base_lr}, weight_decay={self.base_wd}')

    def param_groups(self, model: nn.Module) -> list[dict[str, Any]]:
        """:func:`layer_decay_param_groups` with this config's settings,
        with ``param_names``, and the summary table logged on rank 0."""
        groups = layer_decay_param_groups(
            model, self.base_lr, self.base_wd, self.decay_rate,
            self.decay_type, self.num_layers, with_names=True,
            custom_keys=self.custom_keys)
        if is_main_process():
            model = getattr(model, 'module', model)
            frozen = sum(not param.requires_grad
                         for param in model.parameters())
            num_layers = int(model.backbone.num_layers)
            print_log(self._summary(groups, num_layers, frozen),
                      logger='current', level=logging.INFO)
        return groups

    def _summary(self, groups: list[dict[str, Any]], num_layers: int,
                 frozen: int) -> str:
        """One table: a row per param group, never a line per parameter."""
        lines = [
            f'Layer decay: {self.decay_type}, decay_rate={self.decay_rate}, '
            f'num_layers={num_layers}, base lr={self.base_lr}, '
            f'weight_decay={self.base_wd}; lr = base lr * decay_rate ** '
            f'({num_layers + 1} - layer id); {frozen} frozen tensors skipped',
            f'{"layer":>5} {"lr scale":>10} {"lr":>10} {"decay":>7} '
            f'{"tensors":>7} {"params":>11}  first tensor'
        ]
        for group in groups:
            count = sum(param.numel() for param in group['params'])
            lines.append(
                f'{group["layer_id"]:>5} {group["lr_scale"]:>10.4g} '
                f'{group["lr"]:>10.3g} {group["weight_decay"]:>7.3g} '
                f'{len(group["params"]):>7} {count:>11,}  '
                f'{group["param_names"][0]}')
        return '\n'.join(lines)

    def __call__(self, model: nn.Module) -> OptimWrapper:
        """Build the optimizer wrapper over the layer-decayed param groups."""
        groups = self.param_groups(model)
        for group in groups:
            del group['param_names']  # kept out of optimizer checkpoints
        optimizer = OPTIMIZERS.build(dict(self.optimizer_cfg, params=groups))
        optim_wrapper_cfg = self.optim_wrapper_cfg.copy()
        optim_wrapper_cfg.setdefault('type', 'OptimWrapper')
        return OPTIM_WRAPPERS.build(
            optim_wrapper_cfg, default_args=dict(optimizer=optimizer))


def check_layer_decay_config(cfg: Mapping) -> None:
    """Refuse a config whose layer-decay settings would be silently ignored.

    mmengine's default constructor ignores paramwise_cfg keys it does not
    know, so ``paramwise_cfg=dict(decay_rate=0.7, ...)`` without
    ``constructor='convnext_dense.LayerDecayOptimizerConstructor'`` trains
    every layer at the base lr without a word. Training tools call this on
    the loaded config before building the runner.

    Args:
        cfg: The full config (an mmengine ``Config`` or a dict); only its
            ``optim_wrapper`` entry is read.

    Raises:
        ValueError: If ``optim_wrapper.paramwise_cfg`` holds any of
            ``decay_rate``, ``decay_type``, ``num_layers`` while
            ``optim_wrapper.constructor`` is not this package's
            :class:`LayerDecayOptimizerConstructor` (or a subclass).
    """
    optim_wrapper = cfg.get('optim_wrapper')
    if not isinstance(optim_wrapper, Mapping):
        return
    paramwise_cfg = optim_wrapper.get('paramwise_cfg') or {}
    decay_keys = sorted(set(paramwise_cfg) & set(DECAY_KEYS))
    if not decay_keys:
        return
    constructor = optim_wrapper.get('constructor',
                                    'DefaultOptimWrapperConstructor')
    constructor_cls = (OPTIM_WRAPPER_CONSTRUCTORS.get(constructor)
                       if isinstance(constructor, str) else constructor)
    if not (isinstance(constructor_cls, type)
            and issubclass(constructor_cls, LayerDecayOptimizerConstructor)):
        raise ValueError(
            f'optim_wrapper.paramwise_cfg sets {decay_keys}, but the '
            f'constructor is {constructor!r}, which ignores them: every '
            'layer would train at the base lr. Add '
            "constructor='convnext_dense.LayerDecayOptimizerConstructor' to "
            'optim_wrapper, or remove the decay settings.')
