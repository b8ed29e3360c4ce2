"""Tests of the DINOv3 and ConvNeXt-V2 configs (configs/dinov3/,
configs/convnext_v2/).

Each config's settings are checked against a table (docs/reference.md §4,
§5, §7, §8; what the sources leave open is marked "assumed" in the
configs), and each builds with a tiny backbone of its own kind ('test' for
DINOv3, 'v2-test' for V2, frozen stages kept) and runs one training step
through its own optimizer constructor and one prediction on the CPU.
"""
from __future__ import annotations

import copy
import glob
import math
import os.path as osp

import numpy as np
import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

from mmengine.config import Config  # noqa: E402
from mmengine.model import revert_sync_batchnorm  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

from convnext_dense.models import ConvNeXt  # noqa: E402

from .test_segmentation_configs import tiny_model_cfg, two_samples  # noqa

CONFIG_DIR = osp.join(osp.dirname(__file__), '..', '..', 'configs')
DINO_T = 'checkpoints/dinov3_convnext_tiny_pretrain_lvd1689m-21b726bb.pth'
DINO_B = 'checkpoints/dinov3_convnext_base_pretrain_lvd1689m-801f2ba9.pth'
V2_T = 'checkpoints/convnextv2_tiny_1k_224_ema.pt'
V2_B = 'checkpoints/convnextv2_base_1k_224_ema.pt'

COLUMNS = ('arch', 'drop_path', 'lr', 'decay_type', 'decay_rate',
           'num_layers', 'frozen_stages', 'checkpoint')
TABLE = {
    'dinov3/cascade_convnext_dinov3_t':
    ('tiny', 0.4, 2e-4, 'layer_wise', 0.7, 6, 0, DINO_T),
    'dinov3/cascade_convnext_dinov3_t_frozen':
    ('tiny', 0., 2e-4, 'layer_wise', 1.0, 6, 4, DINO_T),
    'dinov3/cascade_convnext_dinov3_b':
    ('base', 0.6, 1e-4, 'layer_wise', 0.8, 12, 0, DINO_B),
    'dinov3/cascade_convnext_dinov3_b_frozen':
    ('base', 0., 1e-4, 'layer_wise', 1.0, 12, 4, DINO_B),
    'dinov3/upernet_convnext_dinov3_t':
    ('tiny', 0.4, 1e-4, 'stage_wise', 0.9, 6, 0, DINO_T),
    'dinov3/upernet_convnext_dinov3_t_frozen':
    ('tiny', 0., 1e-4, 'stage_wise', 1.0, 6, 4, DINO_T),
    'dinov3/upernet_convnext_dinov3_b':
    ('base', 0.4, 1e-4, 'stage_wise', 0.9, 12, 0, DINO_B),
    'dinov3/upernet_convnext_dinov3_b_frozen':
    ('base', 0., 1e-4, 'stage_wise', 1.0, 12, 4, DINO_B),
    'convnext_v2/mask_rcnn_convnext_v2_t_lsj_3x':
    ('v2-tiny', 0.3, 1e-4, 'layer_wise', 0.95, 6, 0, V2_T),
    'convnext_v2/mask_rcnn_convnext_v2_b_lsj_3x':
    ('v2-base', 0.4, 1e-4, 'layer_wise', 0.95, 12, 0, V2_B),
    'convnext_v2/upernet_convnext_v2_t':
    ('v2-tiny', 0.3, 1e-4, 'stage_wise', 0.9, 6, 0, V2_T),
    'convnext_v2/upernet_convnext_v2_b':
    ('v2-base', 0.4, 1e-4, 'stage_wise', 0.9, 12, 0, V2_B),
}
CONFIGS = sorted(TABLE)
DETECTION = [n for n in CONFIGS if 'upernet' not in n]
SEGMENTATION = [n for n in CONFIGS if 'upernet' in n]
V2_TTA_RATIOS = (0.75, 0.875, 1.0, 1.125, 1.25)

_configs: dict[str, Config] = {}


def load(name: str) -> Config:
    if name not in _configs:
        _configs[name] = Config.fromfile(osp.join(CONFIG_DIR, f'{name}.py'))
    return _configs[name]


def test_every_config_of_the_two_folders_is_in_the_table():
    found = {osp.relpath(path, CONFIG_DIR)[:-3]
             for folder in ('dinov3', 'convnext_v2')
             for path in glob.glob(osp.join(CONFIG_DIR, folder, '*.py'))}
    assert found == set(TABLE)


@pytest.mark.parametrize('name', CONFIGS)
def test_table_row(name):
    cfg = load(name)
    row = dict(zip(COLUMNS, TABLE[name]))
    backbone = cfg.model.backbone
    assert backbone.type == 'convnext_dense.ConvNeXt'
    assert backbone.arch == row['arch']
    assert backbone.drop_path_rate == row['drop_path']
    assert backbone.get('frozen_stages', 0) == row['frozen_stages']
    assert backbone.init_cfg == dict(type='Pretrained',
                                     checkpoint=row['checkpoint'])
    assert cfg.checkpoint == row['checkpoint']
    wrapper = cfg.optim_wrapper
    assert wrapper.type == 'AmpOptimWrapper'  # T and B: fp16, as the papers
    assert wrapper.constructor == (
        'convnext_dense.LayerDecayOptimizerConstructor')
    assert wrapper.optimizer == dict(
        type='AdamW', lr=row['lr'], betas=(0.9, 0.999), weight_decay=0.05)
    assert wrapper.paramwise_cfg == dict(
        decay_rate=row['decay_rate'], decay_type=row['decay_type'],
        num_layers=row['num_layers'])
    with torch.device('meta'):
        model = ConvNeXt(arch=backbone.arch)
    assert model.num_layers == row['num_layers'] == 3 + math.ceil(
        model.depths[2] / 3)
    if 'upernet' in name:
        head, aux = cfg.model.decode_head, cfg.model.auxiliary_head
        assert list(head.in_channels) == list(model.out_channels)
        assert aux.in_channels == model.out_channels[2]
        assert cfg.train_cfg.max_iters == 160000
        assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs = 16
    else:
        assert list(cfg.model.neck.in_channels) == list(model.out_channels)
        assert cfg.train_cfg.max_epochs == 36  # 3x
        assert cfg.param_scheduler[1].milestones == [27, 33]


@pytest.mark.parametrize('name', [n for n in CONFIGS if 'dinov3' in n])
def test_dinov3_configs_keep_their_paper_base(name):
    """A DINOv3 config changes only weights, drop path, lr and decay (and
    the frozen variants freezing) of the paper config it derives from."""
    base_name = {
        'cascade_convnext_dinov3_t': 'cascade_convnext_t',
        'cascade_convnext_dinov3_b': 'cascade_convnext_b',
        'upernet_convnext_dinov3_t': 'upernet_convnext_t',
        'upernet_convnext_dinov3_b': 'upernet_convnext_b',
    }[osp.basename(name).replace('_frozen', '')]
    cfg, base = load(name), load(base_name)
    changed = ('drop_path_rate', 'init_cfg', 'frozen_stages')
    strip = lambda d: {k: v for k, v in d.items() if k not in changed}  # noqa
    assert strip(cfg.model.backbone) == strip(base.model.backbone)
    for key in ('neck', 'rpn_head', 'roi_head', 'decode_head',
                'auxiliary_head', 'test_cfg', 'train_cfg'):
        assert cfg.model.get(key) == base.model.get(key), key
    assert cfg.train_dataloader == base.train_dataloader
    assert cfg.param_scheduler == base.param_scheduler


@pytest.mark.parametrize('name', [n for n in DETECTION if 'v2' in n])
def test_v2_detection_is_lsj_1024_with_soft_nms(name):
    cfg = load(name)
    train = [dict(t) for t in cfg.train_dataloader.dataset.pipeline]
    assert [t['type'] for t in train] == [
        'LoadImageFromFile', 'LoadAnnotations', 'RandomResize', 'RandomCrop',
        'FilterAnnotations', 'RandomFlip', 'PackDetInputs']
    assert train[2] == dict(type='RandomResize', scale=(1024, 1024),
                            ratio_range=(0.1, 2.0), keep_ratio=True)
    assert train[3] == dict(type='RandomCrop', crop_type='absolute_range',
                            crop_size=(1024, 1024), recompute_bbox=True,
                            allow_negative_crop=True)
    assert train[5] == dict(type='RandomFlip', prob=0.5)
    assert cfg.model.data_preprocessor.batch_augments == [
        dict(type='BatchFixedSizePad', size=(1024, 1024), pad_mask=True)]
    # 32 images per iteration: 8 GPUs x 4
    assert cfg.train_dataloader.batch_size == 4
    assert cfg.auto_scale_lr.base_batch_size == 32
    assert cfg.model.test_cfg.rcnn == dict(
        score_thr=0.05, nms=dict(type='soft_nms', iou_threshold=0.5),
        max_per_img=100, mask_thr_binary=0.5)
    test = cfg.test_dataloader.dataset.pipeline
    assert dict(type='Resize', scale=(1333, 800), keep_ratio=True) in test
    assert cfg.model.roi_head.bbox_head.type == 'Shared2FCBBoxHead'


@pytest.mark.parametrize('name', [n for n in SEGMENTATION if 'v2' in n])
def test_v2_segmentation_tta_ratios(name):
    cfg = load(name)
    resizes, flips = cfg.tta_pipeline[1].transforms[:2]
    assert [r.scale for r in resizes] == [
        (int(2048 * r), int(512 * r)) for r in V2_TTA_RATIOS]
    assert [f.prob for f in flips] == [0., 1.]
    assert cfg.model.test_cfg == dict(mode='slide', crop_size=(512, 512),
                                      stride=(341, 341))


# -- one training step and one prediction per config, on the CPU ------------
def tiny_arch(cfg: Config) -> str:
    return 'v2-test' if cfg.model.backbone.arch.startswith('v2') else 'test'


def train_one_step(model, cfg: Config, data: dict) -> dict:
    """One step through the config's own optimizer constructor (plain
    OptimWrapper: fp16 AMP needs CUDA); returns the parameters before."""
    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
    wrapper_cfg.type = 'OptimWrapper'
    # the tiny arch has its own N; the constructor derives it
    wrapper_cfg.paramwise_cfg.pop('num_layers')
    wrapper = build_optim_wrapper(model, wrapper_cfg)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    model.train()
    losses = model.train_step(data, wrapper)
    assert all(torch.isfinite(v).all() for v in losses.values())
    return before


def check_frozen(model, before: dict, frozen_stages: int) -> None:
    changed = {k for k, v in model.named_parameters()
               if not torch.equal(v, before[k])}
    body = [k for k in before if k.startswith(('backbone.stages.',
                                                'backbone.downsample'))]
    if frozen_stages == 4:
        assert not changed & set(body)  # the whole body stayed
        assert 'backbone.norm0.weight' in changed
    else:
        assert 'backbone.downsample_layers.0.0.weight' in changed


@pytest.mark.slow
@pytest.mark.parametrize('name', DETECTION)
def test_detection_trains_and_predicts(name):
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    cfg = load(name)
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.update(arch=tiny_arch(cfg), init_cfg=None)
    model_cfg.neck.in_channels = list(ConvNeXt('test').out_channels)
    preprocessor = model_cfg.data_preprocessor
    if preprocessor.get('batch_augments'):  # LSJ pads to 1024: 128 here
        preprocessor.batch_augments[0].size = (128, 128)
    model_cfg.train_cfg.rpn_proposal.max_per_img = 32
    rcnn = model_cfg.train_cfg.rcnn
    for stage in (rcnn if isinstance(rcnn, list) else [rcnn]):
        stage.sampler.num = 16
    model_cfg.test_cfg.rpn.max_per_img = 50
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(model_cfg))
    model.init_weights()

    image = torch.randint(0, 256, (3, 96, 128), dtype=torch.uint8)
    mask = np.zeros((1, 96, 128), np.uint8)
    mask[0, 10:80, 8:90] = 1
    sample = DetDataSample(metainfo=dict(
        img_shape=(96, 128), ori_shape=(96, 128), scale_factor=(1., 1.)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[8., 10., 90., 80.]]), labels=torch.tensor([3]),
        masks=BitmapMasks(mask, 96, 128))
    data = dict(inputs=[image], data_samples=[sample])
    before = train_one_step(model, cfg, data)
    check_frozen(model, before, cfg.model.backbone.get('frozen_stages', 0))

    model.eval()
    with torch.no_grad():
        [result] = model.test_step(
            dict(inputs=[image], data_samples=[copy.deepcopy(sample)]))
    pred = result.pred_instances
    assert len(pred) <= 100 and pred.bboxes.shape[1] == 4
    assert torch.isfinite(pred.scores).all()


@pytest.mark.slow
@pytest.mark.parametrize('name', SEGMENTATION)
def test_segmentation_trains_and_predicts(name):
    from mmseg.registry import MODELS
    cfg = load(name)
    model_cfg = tiny_model_cfg(cfg)
    model_cfg.backbone.arch = tiny_arch(cfg)
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(model_cfg))
    model.init_weights()
    images, samples = two_samples(num_classes=150)
    before = train_one_step(
        model, cfg, dict(inputs=images, data_samples=samples))
    check_frozen(model, before, cfg.model.backbone.get('frozen_stages', 0))

    model.eval()
    with torch.no_grad():
        [result] = model.test_step(
            dict(inputs=images[:1], data_samples=samples[:1]))
    assert result.pred_sem_seg.data.shape == (1, 64, 64)
