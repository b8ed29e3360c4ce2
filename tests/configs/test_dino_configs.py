"""Tests of the DINO configs (configs/dino/).

Every config is checked against detrex's DINO-ConvNeXt recipe (projects/
dino/configs/dino-convnext/, models/dino_convnext.py, models/dino_r50.py),
written out below as a table; the optimizer's param groups against
detectron2's rule as detrex configures it; and one config per family
(IN-22K, DINOv3) takes a training step and predicts on the CPU with the
tiny 'test' backbone and few queries.
"""
from __future__ import annotations

import copy
import glob
import os.path as osp

import pytest
import torch
import torch.nn as nn

mmdet = pytest.importorskip('mmdet')

from mmengine.config import Config  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

from convnext_dense.models import ConvNeXt  # noqa: E402

CONFIG_DIR = osp.join(osp.dirname(__file__), '..', '..', 'configs', 'dino')

# config -> (arch, checkpoint under checkpoints/); detrex: drop path 0.0,
# out_indices [1, 2, 3] and layer scale 1.0 for every size
TABLE = {
    'dino_convnext_t_in22k_384_4scale_12e':
    ('tiny', 'convnext_tiny_22k_1k_384'),
    'dino_convnext_s_in22k_384_4scale_12e':
    ('small', 'convnext_small_22k_1k_384'),
    'dino_convnext_b_in22k_384_4scale_12e':
    ('base', 'convnext_base_22k_1k_384'),
    'dino_convnext_l_in22k_384_4scale_12e':
    ('large', 'convnext_large_22k_1k_384'),
    'dino_convnext_dinov3_t_4scale_12e':
    ('tiny', 'dinov3_convnext_tiny_pretrain_lvd1689m-21b726bb'),
    'dino_convnext_dinov3_b_4scale_12e':
    ('base', 'dinov3_convnext_base_pretrain_lvd1689m-801f2ba9'),
}
CONFIGS = sorted(TABLE)
# one per family: the IN-22K recipe and the DINOv3 weights on it
FAMILIES = ['dino_convnext_t_in22k_384_4scale_12e',
            'dino_convnext_dinov3_t_4scale_12e']

_configs: dict[str, Config] = {}


def load(name: str) -> Config:
    if name not in _configs:
        _configs[name] = Config.fromfile(osp.join(CONFIG_DIR, f'{name}.py'))
    return _configs[name]


def test_every_dino_config_is_in_the_table():
    found = {osp.splitext(osp.basename(path))[0]
             for path in glob.glob(osp.join(CONFIG_DIR, '*.py'))}
    assert found == set(TABLE)


@pytest.mark.parametrize('name', CONFIGS)
def test_table_row(name):
    cfg = load(name)
    arch, checkpoint = TABLE[name]
    backbone = cfg.model.backbone
    assert backbone == dict(
        type='convnext_dense.ConvNeXt', arch=arch, out_indices=(1, 2, 3),
        drop_path_rate=0.0, layer_scale_init_value=1.0,
        init_cfg=dict(type='Pretrained',
                      checkpoint=f'checkpoints/{checkpoint}.pth'))
    assert cfg.checkpoint == backbone.init_cfg.checkpoint
    with torch.device('meta'):  # no memory for the large archs
        channels = ConvNeXt(arch=arch, out_indices=(1, 2, 3)).out_channels
    assert cfg.model.neck == dict(
        type='ChannelMapper', in_channels=list(channels), kernel_size=1,
        out_channels=256, act_cfg=None,
        norm_cfg=dict(type='GN', num_groups=32), num_outs=4, bias=True)


@pytest.mark.parametrize('name', CONFIGS)
def test_detrex_dino_recipe(name):
    cfg = load(name)
    model = cfg.model
    assert model.type == 'DINO'
    assert (model.num_queries, model.with_box_refine,
            model.as_two_stage) == (900, True, True)
    assert model.dn_cfg == dict(
        label_noise_scale=0.5, box_noise_scale=1.0,
        group_cfg=dict(dynamic=True, num_groups=None, num_dn_queries=100))
    # detrex's PositionEmbeddingSine, not the DINO paper's 20 / 0.0
    assert model.positional_encoding == dict(
        num_feats=128, normalize=True, offset=-0.5, temperature=10000)
    for part in (model.encoder, model.decoder):
        assert part.num_layers == 6
        assert part.layer_cfg.ffn_cfg == dict(
            embed_dims=256, feedforward_channels=2048, ffn_drop=0.0)
    assert model.encoder.layer_cfg.self_attn_cfg.num_levels == 4
    assert model.decoder.layer_cfg.cross_attn_cfg.num_levels == 4
    head = model.bbox_head
    assert (head.type, head.num_classes) == ('DINOHead', 80)
    assert head.loss_cls == dict(type='FocalLoss', use_sigmoid=True,
                                 gamma=2.0, alpha=0.25, loss_weight=1.0)
    assert head.loss_bbox == dict(type='L1Loss', loss_weight=5.0)
    assert head.loss_iou == dict(type='GIoULoss', loss_weight=2.0)
    costs = [(cost.type, cost.weight)
             for cost in model.train_cfg.assigner.match_costs]
    assert costs == [('FocalLossCost', 2.0), ('BBoxL1Cost', 5.0),
                     ('IoUCost', 2.0)]

    wrapper = cfg.optim_wrapper
    assert wrapper.type == 'OptimWrapper'
    assert wrapper.get('constructor') is None  # no layer-wise decay
    assert wrapper.optimizer == dict(type='AdamW', lr=1e-4,
                                     weight_decay=1e-4)
    assert wrapper.clip_grad == dict(max_norm=0.1, norm_type=2)
    assert wrapper.paramwise_cfg == dict(
        custom_keys={'backbone': dict(lr_mult=0.1)}, norm_decay_mult=0.0)
    assert cfg.train_cfg.max_epochs == 12
    # mmengine tags the base's dicts with their scope
    schedulers = [{k: v for k, v in scheduler.items() if k != '_scope_'}
                  for scheduler in cfg.param_scheduler]
    assert schedulers == [dict(
        type='MultiStepLR', begin=0, end=12, by_epoch=True, milestones=[11],
        gamma=0.1)]
    # 8 GPUs x 2 images = detrex's total_batch_size 16
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.auto_scale_lr.base_batch_size == 16
    assert cfg.default_hooks.checkpoint.type == (
        'convnext_dense.AtomicCheckpointHook')
    assert [hook.type for hook in cfg.custom_hooks] == [
        'convnext_dense.NonFiniteLossHook',
        'convnext_dense.ResumableRandomnessHook']
    assert cfg.custom_imports.imports == ['convnext_dense']
    assert cfg.val_evaluator.metric == 'bbox'


def tiny_dino(cfg: Config, backbone_arch: str = 'test') -> nn.Module:
    """cfg's DINO with the 'test' arch, 20 queries and 10 denoising queries:
    the transformer keeps its 6 + 6 layers of width 256."""
    from mmdet.registry import MODELS
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.update(arch=backbone_arch, init_cfg=None)
    model_cfg.neck.in_channels = list(
        ConvNeXt(backbone_arch, out_indices=(1, 2, 3)).out_channels)
    model_cfg.num_queries = 20
    model_cfg.dn_cfg.group_cfg.num_dn_queries = 10
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return model


def detectron2_groups(model: nn.Module) -> dict[str, tuple[float, float]]:
    """(lr, weight decay) of every parameter as detrex builds its AdamW:
    detectron2's get_default_optimizer_params(base_lr=1e-4,
    weight_decay=1e-4, weight_decay_norm=0.0, lr_factor_func=0.1 if
    'backbone' in the name), written out independently of mmengine.
    detectron2's norm types are torch's; detrex's ConvNeXt has its own
    LayerNorm class, so the backbone's norms decay. This package's
    LayerNorm2d subclasses torch's: the backbone is exempt by name."""
    norm_types = (nn.BatchNorm2d, nn.GroupNorm, nn.LayerNorm)
    groups = {}
    for module_name, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            full = f'{module_name}.{name}' if module_name else name
            in_backbone = 'backbone' in full
            norm = isinstance(module, norm_types) and not in_backbone
            groups[full] = (1e-4 * (0.1 if in_backbone else 1.0),
                            0.0 if norm else 1e-4)
    return groups


def test_param_groups_follow_detectron2s_rule():
    cfg = load('dino_convnext_t_in22k_384_4scale_12e')
    model = tiny_dino(cfg)
    wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    names = {id(p): n for n, p in model.named_parameters()}
    found = {}
    for group in wrapper.optimizer.param_groups:
        for param in group['params']:
            found[names[id(param)]] = (group['lr'], group['weight_decay'])
    expected = detectron2_groups(model)
    assert found.keys() == expected.keys()
    for name in found:
        assert found[name] == pytest.approx(expected[name], rel=1e-12), name
    # spot checks of the rule's three cases
    assert found['backbone.stages.0.0.norm.weight'] == pytest.approx(
        (1e-5, 1e-4))
    assert found['backbone.norm3.bias'] == pytest.approx((1e-5, 1e-4))
    assert found['neck.convs.0.gn.weight'] == (1e-4, 0.0)
    assert found['encoder.layers.0.norms.0.bias'] == (1e-4, 0.0)
    assert found['decoder.layers.0.ffn.layers.1.bias'] == (1e-4, 1e-4)
    assert found['query_embedding.weight'] == (1e-4, 1e-4)
    # how many tensors each (lr, decay) holds in the tiny model: backbone
    # 58 = stem 4 + 3 downsamples x 4 + 4 blocks x 9 + norm1-3 x 2; norms
    # 72 = neck GN 4 x 2 + encoder 6 x 2 x 2 + decoder 6 x 3 x 2 + decoder
    # and memory norms 2 x 2
    counts = {}
    for value in found.values():
        key = (round(value[0], 9), value[1])
        counts[key] = counts.get(key, 0) + 1
    assert counts == {(1e-5, 1e-4): 58, (1e-4, 0.0): 72,
                      (1e-4, 1e-4): 241}  # 4 neck conv biases among them


@pytest.mark.parametrize('name', FAMILIES)
def test_trains_a_step_and_predicts(name):
    from mmdet.structures import DetDataSample
    cfg = load(name)
    model = tiny_dino(cfg)
    image = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8)
    sample = DetDataSample(metainfo=dict(
        img_shape=(64, 96), ori_shape=(64, 96), scale_factor=(1., 1.)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[8., 10., 60., 50.], [50., 5., 90., 30.]]),
        labels=torch.tensor([3, 17]))
    data = dict(inputs=[image], data_samples=[sample])
    wrapper = build_optim_wrapper(model, copy.deepcopy(cfg.optim_wrapper))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    model.train()
    losses = model.train_step(data, wrapper)
    assert all(torch.isfinite(v).all() for v in losses.values())
    # the denoising and the two-stage encoder losses are there
    for key in ('loss_cls', 'loss_bbox', 'loss_iou', 'enc_loss_cls',
                'dn_loss_bbox', 'd4.loss_iou'):
        assert key in losses
    for key in ('backbone.downsample_layers.0.0.weight',
                'decoder.layers.5.cross_attn.sampling_offsets.weight',
                'query_embedding.weight'):
        assert not torch.equal(dict(model.named_parameters())[key],
                               before[key]), key

    model.eval()
    with torch.no_grad():
        [result] = model.test_step(
            dict(inputs=[image], data_samples=[copy.deepcopy(sample)]))
    pred = result.pred_instances
    # the top 300 (test_cfg) of 20 queries x 80 sigmoid class scores
    assert len(pred) == 300
    assert torch.isfinite(pred.bboxes).all()
    assert (pred.bboxes[:, 0::2] <= 96).all()
    assert (pred.bboxes[:, 1::2] <= 64).all()
    assert ((pred.scores >= 0) & (pred.scores <= 1)).all()
