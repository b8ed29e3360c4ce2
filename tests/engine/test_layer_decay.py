"""Tests of the layer-decay constructor (convnext_dense/engine/layer_decay.py).

decay_rate=2 makes every expected lr base_lr * 2 ** (N + 1 - id), a power of
two times base_lr, so each is compared with ``==`` (a rate above 1 is no
use in training, but it is exact in floating point). The expected layer ids
and weight decays are tables written from docs/reference.md §3, not derived
from the backbone's get_layer_id.
"""
from __future__ import annotations

import logging

import pytest
import torch
import torch.distributed as dist
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper

from convnext_dense.engine import layer_decay
from convnext_dense.engine.layer_decay import (LayerDecayOptimizerConstructor,
                                               check_layer_decay_config,
                                               layer_decay_param_groups)
from convnext_dense.models import ConvNeXt

T_DEPTHS = (3, 3, 9, 3)
S_DEPTHS = (3, 3, 27, 3)
BASE_LR = 1e-3
BASE_WD = 0.05

# docs/reference.md §3, layer_wise: the id of each block of stage 2
# ("3 + b // 3")
STAGE2_IDS = {
    T_DEPTHS: [3, 3, 3, 4, 4, 4, 5, 5, 5],
    S_DEPTHS: [3, 3, 3, 4, 4, 4, 5, 5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8,
               9, 9, 9, 10, 10, 10, 11, 11, 11],
}
NUM_LAYERS = {T_DEPTHS: 6, S_DEPTHS: 12}


class StandInDetector(nn.Module):
    """Backbone + neck + head, laid out like an mmdet detector."""

    def __init__(self, depths=T_DEPTHS, **backbone_kwargs) -> None:
        super().__init__()
        self.backbone = ConvNeXt(
            arch=dict(depths=depths, dims=(8, 8, 8, 8)), **backbone_kwargs)
        self.neck = nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8))
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # every level (N, 8, H / s, W / s) -> neck -> pooled (N, 8), summed
        pooled = sum(self.neck(feature).mean(dim=(2, 3))
                     for feature in self.backbone(x))
        return self.head(pooled)  # (N, 2)


def expected_layer_id(name: str, depths, decay_type: str) -> int:
    """The id of a stand-in detector parameter, per docs/reference.md §3."""
    n = NUM_LAYERS[depths]
    parts = name.split('.')
    if parts[0] != 'backbone' or parts[1] not in ('downsample_layers',
                                                  'stages'):
        return n + 1  # backbone.norm{i}, neck, head
    index = int(parts[2])
    if decay_type == 'stage_wise':
        return 0 if parts[1] == 'downsample_layers' else index + 1
    if parts[1] == 'downsample_layers':
        return {0: 0, 1: 2, 2: 3, 3: n}[index]
    if index == 2:
        return STAGE2_IDS[depths][int(parts[3])]
    return {0: 1, 1: 2, 3: n}[index]


def expected_weight_decay(name: str) -> float:
    """0 for biases, norms, layer scale and GRN; the base value otherwise."""
    parts = name.split('.')
    # the LayerNorm of downsample layer i: stem (0, 1), the others (i, 0)
    downsample_norm = parts[1] == 'downsample_layers' and (
        parts[2:4] == ['0', '1'] or (parts[2] != '0' and parts[3] == '0'))
    no_decay = (
        downsample_norm
        or name.endswith(('.bias', '.gamma', '.beta'))  # + layer scale, GRN
        or parts[-2].startswith('norm')  # block norms, output norms norm0..3
        or name.startswith('neck.1.'))  # BatchNorm
    return 0. if no_decay else BASE_WD


def build(model: nn.Module, **paramwise_cfg):
    cfg = dict(
        type='OptimWrapper',
        constructor='convnext_dense.LayerDecayOptimizerConstructor',
        optimizer=dict(
            type='AdamW', lr=BASE_LR, betas=(0.9, 0.999),
            weight_decay=BASE_WD),
        paramwise_cfg=paramwise_cfg)
    return build_optim_wrapper(model, cfg)


def settings_by_name(model: nn.Module, optimizer) -> dict[str, dict]:
    """Map each parameter name to the settings of the group holding it."""
    group_of = {}
    for group in optimizer.param_groups:
        for param in group['params']:
            assert id(param) not in group_of, 'a parameter in two groups'
            group_of[id(param)] = group
    return {name: group_of[id(param)]
            for name, param in model.named_parameters()
            if id(param) in group_of}


@pytest.mark.parametrize('depths', [T_DEPTHS, S_DEPTHS], ids=['T', 'S'])
@pytest.mark.parametrize('decay_type', ['layer_wise', 'stage_wise'])
def test_every_parameter_gets_the_reference_lr_and_decay(depths, decay_type):
    model = StandInDetector(depths)
    optimizer = build(model, decay_rate=2., decay_type=decay_type).optimizer
    settings = settings_by_name(model, optimizer)
    n = NUM_LAYERS[depths]

    assert len(settings) == len(list(model.parameters()))
    for name, group in settings.items():
        layer_id = expected_layer_id(name, depths, decay_type)
        assert group['layer_id'] == layer_id, name
        assert group['lr'] == BASE_LR * 2.**(n + 1 - layer_id), name
        assert group['lr_scale'] == 2.**(n + 1 - layer_id), name
        assert group['weight_decay'] == expected_weight_decay(name), name
    # as few groups as possible: one per (layer id, weight decay)
    pairs = {(g['layer_id'], g['weight_decay']) for g in settings.values()}
    assert len(optimizer.param_groups) == len(pairs)


def test_spot_checks_of_the_tables():
    """A few rows written out, so the tables above cannot drift together."""
    model = StandInDetector(S_DEPTHS)
    settings = settings_by_name(
        model, build(model, decay_rate=2.).optimizer)
    rows = {
        'backbone.downsample_layers.0.0.weight': (0, BASE_WD),
        'backbone.stages.0.2.pwconv1.weight': (1, BASE_WD),
        'backbone.downsample_layers.1.0.weight': (2, 0.),
        'backbone.downsample_layers.2.1.weight': (3, BASE_WD),
        'backbone.stages.2.2.dwconv.weight': (3, BASE_WD),
        'backbone.stages.2.3.dwconv.bias': (4, 0.),
        'backbone.stages.2.26.gamma': (11, 0.),
        'backbone.downsample_layers.3.1.weight': (12, BASE_WD),
        'backbone.stages.3.0.norm.weight': (12, 0.),
        'backbone.norm3.weight': (13, 0.),
        'neck.0.weight': (13, BASE_WD),
        'head.bias': (13, 0.),
    }
    for name, (layer_id, weight_decay) in rows.items():
        assert settings[name]['lr'] == BASE_LR * 2.**(13 - layer_id), name
        assert settings[name]['weight_decay'] == weight_decay, name


def test_grn_parameters_do_not_decay_although_4d():
    model = StandInDetector(T_DEPTHS, use_grn=True)
    settings = settings_by_name(
        model, build(model, decay_rate=2.).optimizer)
    grn = {name: s for name, s in settings.items() if '.grn.' in name}
    assert len(grn) == 2 * sum(T_DEPTHS)
    for name, group in grn.items():
        assert model.get_parameter(name).ndim == 4
        assert group['weight_decay'] == 0.
    assert settings['backbone.stages.1.0.pwconv2.weight']['weight_decay'] \
        == BASE_WD


def test_reference_scales():
    """The scales docs/reference.md §3 gives for the published configs."""
    model = StandInDetector(T_DEPTHS)
    cascade = settings_by_name(model, build(
        model, decay_rate=0.7, decay_type='layer_wise',
        num_layers=6).optimizer)
    for name, scale in {
            'backbone.downsample_layers.0.0.weight': 0.082,
            'backbone.stages.0.0.dwconv.weight': 0.118,
            'backbone.stages.1.0.dwconv.weight': 0.168,
            'backbone.stages.2.0.dwconv.weight': 0.240,
            'backbone.stages.2.3.dwconv.weight': 0.343,
            'backbone.stages.2.8.dwconv.weight': 0.490,
            'backbone.stages.3.2.dwconv.weight': 0.70,
            'head.weight': 1.0}.items():
        assert cascade[name]['lr_scale'] == pytest.approx(scale, abs=1e-3)
        assert cascade[name]['lr'] == pytest.approx(
            BASE_LR * scale, abs=1e-3 * BASE_LR)

    upernet = settings_by_name(model, build(
        model, decay_rate=0.9, decay_type='stage_wise',
        num_layers=6).optimizer)
    for index in range(4):
        assert upernet[f'backbone.downsample_layers.{index}.1.bias'][
            'lr_scale'] == pytest.approx(0.478, abs=1e-3)
    for index, scale in enumerate((0.531, 0.590, 0.656, 0.729)):
        assert upernet[f'backbone.stages.{index}.0.pwconv1.weight'][
            'lr_scale'] == pytest.approx(scale, abs=1e-3)
    assert upernet['neck.0.weight']['lr_scale'] == 1.0


def test_frozen_parameters_are_left_out():
    model = StandInDetector(T_DEPTHS, frozen_stages=1)
    settings = settings_by_name(
        model, build(model, decay_rate=2.).optimizer)
    frozen = {name for name, p in model.named_parameters()
              if not p.requires_grad}
    assert frozen and all(
        name.startswith(('backbone.downsample_layers.0.',
                         'backbone.stages.0.')) for name in frozen)
    assert set(settings) == {name for name, _ in model.named_parameters()} \
        - frozen


# -- errors ------------------------------------------------------------------
def test_unknown_decay_type_is_refused():
    with pytest.raises(ValueError, match='decay_type'):
        build(StandInDetector(), decay_rate=0.7, decay_type='block_wise')


def test_inconsistent_num_layers_is_refused():
    # Cascade S copied from a T config: 27 blocks would get scales up to 4x
    with pytest.raises(ValueError, match=r'3 \+ ceil'):
        build(StandInDetector(S_DEPTHS), decay_rate=0.7, num_layers=6)


def test_num_layers_is_derived_when_omitted():
    model = StandInDetector(S_DEPTHS)
    settings = settings_by_name(
        model, build(model, decay_rate=2.).optimizer)
    assert settings['backbone.downsample_layers.0.0.weight']['lr'] == \
        BASE_LR * 2.**13


def test_missing_decay_rate_and_unknown_keys_are_refused():
    with pytest.raises(ValueError, match='decay_rate'):
        build(StandInDetector(), decay_type='layer_wise')
    # custom_keys is read (tests/engine/test_layer_decay_custom_keys.py);
    # mmengine's other paramwise settings are not
    with pytest.raises(ValueError, match='norm_decay_mult'):
        build(StandInDetector(), decay_rate=0.7, norm_decay_mult=0.)


@pytest.mark.parametrize('model', [
    nn.Linear(2, 2),
    nn.ModuleDict(dict(backbone=nn.Conv2d(3, 8, 3))),
], ids=['no backbone', 'backbone without get_layer_id'])
def test_model_without_layer_ids_is_refused(model):
    with pytest.raises(TypeError, match='get_layer_id'):
        build(model, decay_rate=0.7)


def test_decay_settings_without_the_constructor_are_caught():
    optimizer = dict(type='AdamW', lr=1e-4, weight_decay=0.05)
    decay = dict(decay_rate=0.9, decay_type='stage_wise', num_layers=6)
    for constructor in (None, 'DefaultOptimWrapperConstructor',
                        'mmdet.LearningRateDecayOptimizerConstructor'):
        optim_wrapper = dict(optimizer=optimizer, paramwise_cfg=decay)
        if constructor is not None:
            optim_wrapper['constructor'] = constructor
        for cfg in (dict(optim_wrapper=optim_wrapper),
                    Config(dict(optim_wrapper=optim_wrapper))):
            with pytest.raises(ValueError,
                               match='LayerDecayOptimizerConstructor'):
                check_layer_decay_config(cfg)
    # what the check guards against: the default constructor builds quietly
    # with one lr for every parameter
    optim = build_optim_wrapper(StandInDetector(), dict(
        optimizer=optimizer, paramwise_cfg=decay))
    assert {group['lr'] for group in optim.optimizer.param_groups} == {1e-4}

    for constructor in ('convnext_dense.LayerDecayOptimizerConstructor',
                        LayerDecayOptimizerConstructor):
        check_layer_decay_config(dict(optim_wrapper=dict(
            optimizer=optimizer, paramwise_cfg=decay,
            constructor=constructor)))
    check_layer_decay_config(dict(optim_wrapper=dict(
        optimizer=optimizer, paramwise_cfg=dict(norm_decay_mult=0.))))
    check_layer_decay_config(dict())


# -- wrapped models, logging, a real step ------------------------------------
def group_table(optimizer) -> list[tuple]:
    return [(tuple(id(p) for p in group['params']), group['lr'],
             group['weight_decay'], group['lr_scale'], group['layer_id'])
            for group in optimizer.param_groups]


def test_wrapped_model_gives_identical_groups(tmp_path):
    model = StandInDetector()
    plain = group_table(build(model, decay_rate=2.).optimizer)

    class Wrapper(nn.Module):
        def __init__(self, module):
            super().__init__()
            self.module = module

    assert group_table(build(Wrapper(model), decay_rate=2.).optimizer) == plain

    dist.init_process_group(
        'gloo', init_method=f'file://{tmp_path}/store', rank=0, world_size=1)
    try:
        ddp = nn.parallel.DistributedDataParallel(model)
        assert group_table(build(ddp, decay_rate=2.).optimizer) == plain
    finally:
        dist.destroy_process_group()


class Recorder(logging.Handler):

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)  # not the registry's DEBUG lines
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_one_summary_table_on_rank_zero_only(monkeypatch):
    logger = MMLogger.get_current_instance()
    recorder = Recorder()
    logger.addHandler(recorder)
    try:
        model = StandInDetector()
        optimizer = build(model, decay_rate=0.7).optimizer
        assert len(recorder.messages) == 1
        table = recorder.messages[0].splitlines()
        assert len(table) == 2 + len(optimizer.param_groups)
        assert len(table) < len(list(model.parameters())) / 5
        assert 'decay_rate=0.7' in table[0] and 'num_layers=6' in table[0]

        recorder.messages.clear()
        monkeypatch.setattr(layer_decay, 'is_main_process', lambda: False)
        build(model, decay_rate=0.7)
        assert recorder.messages == []
    finally:
        logger.removeHandler(recorder)


def test_adamw_step_moves_each_group_at_its_own_rate():
    """One AdamW step with zero weight decay, built through the registry.

    Adam's first step is lr * g / (|g| + eps) per element: at most lr, and
    lr itself wherever |g| >> eps, so the largest move reveals the group's lr.
    """
    torch.manual_seed(0)
    model = StandInDetector()
    optim_wrapper = build_optim_wrapper(model, dict(
        type='OptimWrapper',
        constructor='convnext_dense.LayerDecayOptimizerConstructor',
        optimizer=dict(type='AdamW', lr=BASE_LR, betas=(0.9, 0.999),
                       weight_decay=0., eps=1e-12),
        paramwise_cfg=dict(decay_rate=2., decay_type='layer_wise')))
    assert isinstance(optim_wrapper.optimizer, torch.optim.AdamW)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    loss = model(torch.randn(2, 3, 64, 64)).square().sum()
    optim_wrapper.update_params(loss)

    for name, param in model.named_parameters():
        moved = (param.detach() - before[name]).abs()
        lr = BASE_LR * 2.**(7 - expected_layer_id(name, T_DEPTHS,
                                                  'layer_wise'))
        assert moved.max().item() == pytest.approx(lr, rel=1e-4), name


@pytest.mark.parametrize('depths', [T_DEPTHS, S_DEPTHS], ids=['T', 'S'])
@pytest.mark.parametrize('decay_type', ['layer_wise', 'stage_wise'])
def test_plain_pytorch_groups_equal_the_constructor_s(depths, decay_type):
    """layer_decay_param_groups + torch.optim.AdamW, no Runner: every group
    (params, lr, weight decay) equal to what the constructor builds."""
    model = StandInDetector(depths)
    model.backbone.downsample_layers[0].requires_grad_(False)  # frozen stem
    built = build(model, decay_rate=2., decay_type=decay_type).optimizer
    groups = layer_decay_param_groups(
        model, base_lr=BASE_LR, weight_decay=BASE_WD, decay_rate=2.,
        decay_type=decay_type)
    plain = torch.optim.AdamW(groups, lr=BASE_LR, weight_decay=BASE_WD)
    assert len(plain.param_groups) == len(built.param_groups) > 2
    for ours, theirs in zip(plain.param_groups, built.param_groups):
        assert [id(p) for p in ours['params']] == \
            [id(p) for p in theirs['params']]
        assert (ours['lr'], ours['weight_decay'], ours['lr_scale'],
                ours['layer_id']) == (theirs['lr'], theirs['weight_decay'],
                                      theirs['lr_scale'], theirs['layer_id'])
    # and the table of the reference (docs/reference.md §3) holds for it
    for name, group in settings_by_name(model, plain).items():
        layer_id = expected_layer_id(name, depths, decay_type)
        assert group['lr'] == BASE_LR * 2.**(NUM_LAYERS[depths] + 1 -
                                              layer_id), name
        assert group['weight_decay'] == expected_weight_decay(name), name


def test_plain_pytorch_groups_check_their_settings():
    model = StandInDetector()
    with pytest.raises(ValueError, match='unknown decay_type'):
        layer_decay_param_groups(model, 1e-3, 0.05, 0.7, 'block_wise')
    with pytest.raises(ValueError, match='num_layers=12 does not match'):
        layer_decay_param_groups(model, 1e-3, 0.05, 0.7, num_layers=12)
    with pytest.raises(ValueError, match='decay_rate must be positive'):
        layer_decay_param_groups(model, 1e-3, 0.05, 0.)
