"""Tests of the Mask2Former configs (configs/mask2former/).

Each config is checked against a table of its own settings and against the
recipe it follows, read from the upstream configs themselves (mmseg 1.2.2's
and mmdet 3.3.0's Mask2Former files, shipped in their packages): everything
but the backbone and the optimizer constructor must equal upstream. The
parameter groups of the real heads on the tiny backbone are checked against
a rule written out here (layer decay x the backbone's 0.1, embeddings without
weight decay). Training steps: test_mask2former_steps.py.
"""
from __future__ import annotations

import copy
import glob
import importlib
import math
import os.path as osp

import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

from mmengine.config import Config  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402

from convnext_dense.models import ConvNeXt  # noqa: E402

CONFIG_DIR = osp.join(osp.dirname(__file__), '..', '..', 'configs')
UPSTREAM = {
    'ade512': 'mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py',
    'ade640': 'mmseg::mask2former/mask2former_swin-b-in1k-384x384-pre_'
              '8xb2-160k_ade20k-640x640.py',
    'coco': 'mmdet::mask2former/mask2former_r50_8xb2-lsj-50e_coco.py',
}
V1 = 'checkpoints/convnext_{}_{}_224.pth'
DINO_T = 'checkpoints/dinov3_convnext_tiny_pretrain_lvd1689m-21b726bb.pth'
DINO_B = 'checkpoints/dinov3_convnext_base_pretrain_lvd1689m-801f2ba9.pth'
COLUMNS = ('recipe', 'arch', 'drop_path', 'decay_type', 'decay_rate',
           'num_layers', 'checkpoint')
TABLE = {
    'mask2former_convnext_t_ade20k_512': (
        'ade512', 'tiny', 0.4, 'stage_wise', 0.9, 6, V1.format('tiny', '1k')),
    'mask2former_convnext_s_ade20k_512': (
        'ade512', 'small', 0.3, 'stage_wise', 0.9, 12,
        V1.format('small', '1k')),
    'mask2former_convnext_b_ade20k_512': (
        'ade512', 'base', 0.4, 'stage_wise', 0.9, 12, V1.format('base', '1k')),
    'mask2former_convnext_b_in22k_ade20k_640': (
        'ade640', 'base', 0.4, 'stage_wise', 0.9, 12,
        V1.format('base', '22k')),
    'mask2former_convnext_l_in22k_ade20k_640': (
        'ade640', 'large', 0.4, 'stage_wise', 0.9, 12,
        V1.format('large', '22k')),
    'mask2former_convnext_v2_t_ade20k_512': (
        'ade512', 'v2-tiny', 0.3, 'stage_wise', 0.9, 6,
        'checkpoints/convnextv2_tiny_1k_224_ema.pt'),
    'mask2former_convnext_v2_b_ade20k_512': (
        'ade512', 'v2-base', 0.4, 'stage_wise', 0.9, 12,
        'checkpoints/convnextv2_base_1k_224_ema.pt'),
    'mask2former_convnext_dinov3_t_ade20k_512': (
        'ade512', 'tiny', 0.4, 'stage_wise', 0.9, 6, DINO_T),
    'mask2former_convnext_dinov3_b_ade20k_512': (
        'ade512', 'base', 0.4, 'stage_wise', 0.9, 12, DINO_B),
    'mask2former_convnext_t_coco_instance': (
        'coco', 'tiny', 0.4, 'layer_wise', 0.95, 6, V1.format('tiny', '1k')),
    'mask2former_convnext_s_coco_instance': (
        'coco', 'small', 0.6, 'layer_wise', 0.95, 12,
        V1.format('small', '1k')),
    'mask2former_convnext_b_coco_instance': (
        'coco', 'base', 0.7, 'layer_wise', 0.95, 12, V1.format('base', '1k')),
}
CONFIGS = sorted(TABLE)
EMBEDDINGS = ('query_embed', 'query_feat', 'level_embed')

_configs: dict[str, Config] = {}


def load(name: str) -> Config:
    if name not in _configs:
        if '::' in name:  # a config shipped in mmseg's or mmdet's package
            package, path = name.split('::')
            root = osp.dirname(importlib.import_module(package).__file__)
            path = osp.join(root, '.mim', 'configs', path)
        else:
            path = osp.join(CONFIG_DIR, 'mask2former', f'{name}.py')
        _configs[name] = Config.fromfile(path)
    return _configs[name]


def head_key(cfg) -> str:
    return 'decode_head' if 'decode_head' in cfg['model'] else 'panoptic_head'


def without(d: dict, *keys: str) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def plain(value):
    """``value`` without the ``_scope_`` keys mmengine adds to whatever a
    config inherits through ``mmseg::``/``mmdet::``."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items() if k != '_scope_'}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    return value


def test_every_mask2former_config_is_in_the_table():
    found = {osp.splitext(osp.basename(path))[0] for path in glob.glob(
        osp.join(CONFIG_DIR, 'mask2former', '*.py'))}
    assert found == set(TABLE)


@pytest.mark.parametrize('name', CONFIGS)
def test_table_row(name):
    cfg = load(name)
    row = dict(zip(COLUMNS, TABLE[name]))
    assert 'convnext_dense' in cfg.custom_imports.imports
    assert cfg.model.backbone == dict(
        type='convnext_dense.ConvNeXt', arch=row['arch'],
        out_indices=(0, 1, 2, 3), drop_path_rate=row['drop_path'],
        layer_scale_init_value=1.0,
        init_cfg=dict(type='Pretrained', checkpoint=row['checkpoint']))
    assert cfg.checkpoint == row['checkpoint']

    # mmseg's/mmdet's Swin recipe: AdamW 1e-4, wd 0.05, eps 1e-8, clip 0.01,
    # fp32, the backbone at 0.1 x lr, embeddings without weight decay; and
    # the backbone's own layer decay
    wrapper = cfg.optim_wrapper
    assert wrapper.type == 'OptimWrapper'
    assert wrapper.constructor == (
        'convnext_dense.LayerDecayOptimizerConstructor')
    assert wrapper.optimizer == dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                                     eps=1e-8, weight_decay=0.05)
    assert wrapper.clip_grad == dict(max_norm=0.01, norm_type=2)
    embed = dict(lr_mult=1.0, decay_mult=0.0)
    assert wrapper.paramwise_cfg == dict(
        decay_rate=row['decay_rate'], decay_type=row['decay_type'],
        num_layers=row['num_layers'],
        custom_keys=dict(backbone=dict(lr_mult=0.1, decay_mult=1.0),
                         **{key: embed for key in EMBEDDINGS}))

    # the recipe's numbers, written out (upstream equality below)
    head = cfg.model[head_key(cfg)]
    assert (head.num_queries, head.feat_channels, head.out_channels) == (
        100, 256, 256)
    assert head.num_transformer_feat_level == 3
    assert head.pixel_decoder.encoder.num_layers == 6
    assert head.transformer_decoder.num_layers == 9
    assert head.loss_cls.loss_weight == 2.0
    assert head.loss_mask.loss_weight == head.loss_dice.loss_weight == 5.0
    classes = 80 if row['recipe'] == 'coco' else 150
    assert head.loss_cls.class_weight == [1.0] * classes + [0.1]
    assert cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    if row['recipe'] == 'coco':
        assert cfg.train_cfg.max_iters == 368750  # 50 epochs x 118k / 16
        assert cfg.param_scheduler.milestones == [327778, 355092]
    else:
        assert cfg.train_cfg.max_iters == 160000
        [poly] = cfg.param_scheduler
        assert (poly.type, poly.power, poly.eta_min, poly.end) == (
            'PolyLR', 0.9, 0, 160000)
        crop = int(row['recipe'][3:])
        assert tuple(cfg.model.data_preprocessor.size) == (crop, crop)
        assert cfg.model.test_cfg == dict(mode='whole')

    # recoverable training (configs/_base_/reliability.py)
    assert cfg.default_hooks.checkpoint.type == (
        'convnext_dense.AtomicCheckpointHook')
    assert cfg.default_hooks.checkpoint.interval == 5000
    assert [h.type for h in cfg.custom_hooks] == [
        'convnext_dense.NonFiniteLossHook',
        'convnext_dense.ResumableRandomnessHook']


@pytest.mark.parametrize('name', CONFIGS)
def test_everything_else_is_the_upstream_recipe(name):
    """Head (but its input widths), data, schedule, loops, evaluation: equal
    to mmseg's/mmdet's own Mask2Former config."""
    cfg, upstream = load(name), load(UPSTREAM[TABLE[name][0]])
    cfg, upstream = plain(cfg.to_dict()), plain(upstream.to_dict())
    key = head_key(cfg)
    assert without(cfg['model'][key], 'in_channels') == without(
        upstream['model'][key], 'in_channels')
    assert without(cfg['model'], 'backbone', key) == without(
        upstream['model'], 'backbone', key)
    for part in ('train_dataloader', 'val_dataloader', 'test_dataloader',
                 'val_evaluator', 'test_evaluator', 'param_scheduler',
                 'train_cfg', 'val_cfg', 'test_cfg', 'auto_scale_lr',
                 'tta_model', 'tta_pipeline'):
        assert cfg.get(part) == upstream.get(part), part
    for part in ('optimizer', 'clip_grad'):
        assert cfg['optim_wrapper'][part] == upstream['optim_wrapper'][part]
    assert without(cfg['default_hooks']['checkpoint'], 'type') == without(
        upstream['default_hooks']['checkpoint'], 'type')
    # upstream's custom keys, but the backbone's own norms (not Swin's)
    upstream_keys = upstream['optim_wrapper']['paramwise_cfg']['custom_keys']
    for key, mults in cfg['optim_wrapper']['paramwise_cfg'][
            'custom_keys'].items():
        assert upstream_keys[key] == mults


def meta_backbone(cfg: Config) -> ConvNeXt:
    kwargs = without(cfg.model.backbone, 'type', 'init_cfg')
    with torch.device('meta'):
        return ConvNeXt(**kwargs)


@pytest.mark.parametrize('name', CONFIGS)
def test_head_takes_what_the_backbone_gives(name):
    cfg = load(name)
    backbone = meta_backbone(cfg)
    head = cfg.model[head_key(cfg)]
    assert list(head.in_channels) == list(backbone.out_channels)
    assert list(head.strides) == [4, 8, 16, 32]
    assert cfg.optim_wrapper.paramwise_cfg.num_layers == (
        backbone.num_layers) == 3 + math.ceil(backbone.depths[2] / 3)


def expected_layer_id(name: str, decay_type: str, n: int) -> int:
    """docs/layer_decay.md's table for the 'test' arch (one block a stage:
    stage 2 is all block 0)."""
    parts = name.split('.')
    if parts[0] != 'backbone' or parts[1] not in ('downsample_layers',
                                                  'stages'):
        return n + 1
    index = int(parts[2])
    if decay_type == 'stage_wise':
        return 0 if parts[1] == 'downsample_layers' else index + 1
    if parts[1] == 'downsample_layers':
        return {0: 0, 1: 2, 2: 3, 3: n}[index]
    return {0: 1, 1: 2, 2: 3, 3: n}[index]


@pytest.mark.parametrize('name', [
    'mask2former_convnext_t_ade20k_512',
    'mask2former_convnext_v2_t_ade20k_512',
    'mask2former_convnext_t_coco_instance'])
def test_parameter_groups(name):
    """Every parameter of the real head on a tiny backbone: lr = 1e-4 x
    (0.1 x rate ** (N + 1 - id) in the backbone, 1 elsewhere); weight decay
    0.05 but 0 for biases, 1-D tensors (norms, layer scale), GRN and the
    query/level embeddings. (The pixel decoder's level_encoding keeps weight
    decay: mmseg's and mmdet's 'level_embed' key misses it too.)"""
    from mmdet.registry import MODELS
    cfg = load(name)
    row = dict(zip(COLUMNS, TABLE[name]))
    init_default_scope('mmseg' if 'ade20k' in name else 'mmdet')
    model_cfg = copy.deepcopy(cfg.model)
    v2 = row['arch'].startswith('v2')
    model_cfg.backbone.update(arch='v2-test' if v2 else 'test', init_cfg=None)
    model_cfg[head_key(cfg)].in_channels = list(
        ConvNeXt('test').out_channels)
    if 'ade20k' in name:
        from mmseg.registry import MODELS
    model = MODELS.build(model_cfg)
    n = model.backbone.num_layers
    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
    wrapper_cfg.paramwise_cfg.pop('num_layers')
    optimizer = build_optim_wrapper(model, wrapper_cfg).optimizer

    group_of = {id(p): g for g in optimizer.param_groups for p in g['params']}
    names = [k for k, _ in model.named_parameters()]
    assert len(group_of) == len(names)
    matched = set()
    for key, param in model.named_parameters():
        group = group_of[id(param)]
        layer_id = expected_layer_id(key, row['decay_type'], n)
        lr = 1e-4
        if key.startswith('backbone.'):
            lr *= 0.1 * row['decay_rate']**(n + 1 - layer_id)
        embedding = any(e in key for e in EMBEDDINGS)
        matched.update(e for e in EMBEDDINGS if e in key)
        no_decay = (param.ndim <= 1 or key.endswith('.bias') or '.grn.' in key
                    or embedding)
        assert group['layer_id'] == layer_id, key
        assert math.isclose(group['lr'], lr, rel_tol=1e-12), key
        assert group['weight_decay'] == (0. if no_decay else 0.05), key
    assert matched == set(EMBEDDINGS)
    assert any('pixel_decoder.level_encoding' in k for k in names)
    if v2:
        assert any('.grn.' in k for k in names)
