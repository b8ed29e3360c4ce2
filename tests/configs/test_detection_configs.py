"""Tests of the detection configs (configs/cascade_*.py, mask_rcnn_*.py).

Every config is checked against the paper's settings (docs/reference.md §4),
written out below as a table, and every config builds its detector (with
the tiny 'test' backbone substituted) and computes finite losses on one
64x64 image.
"""
from __future__ import annotations

import copy
import os.path as osp

import numpy as np
import pytest
import torch

mmdet = pytest.importorskip('mmdet')

from mmengine.config import Config  # noqa: E402
from mmengine.model import revert_sync_batchnorm  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.structures import InstanceData  # noqa: E402

from convnext_dense.models import ConvNeXt  # noqa: E402

CONFIG_DIR = osp.join(osp.dirname(__file__), '..', '..', 'configs')

# docs/reference.md §4, one row per config; checkpoint names are the official
# files under checkpoints/. The 1x rows were not released: lr and decay are
# the T 3x ones, drop path the cascade's for the same variant (assumed).
COLUMNS = ('arch', 'drop_path', 'lr', 'decay_rate', 'num_layers', 'fp16',
           'epochs', 'milestones', 'checkpoint')
TABLE = {
    'cascade_convnext_t':
    ('tiny', 0.4, 2e-4, 0.7, 6, True, 36, [27, 33], 'convnext_tiny_1k_224'),
    'cascade_convnext_s':
    ('small', 0.6, 2e-4, 0.7, 12, True, 36, [27, 33], 'convnext_small_1k_224'),
    'cascade_convnext_b':
    ('base', 0.7, 2e-4, 0.8, 12, True, 36, [27, 33], 'convnext_base_1k_224'),
    'cascade_convnext_b_in22k':
    ('base', 0.6, 1e-4, 0.8, 12, True, 36, [27, 33], 'convnext_base_22k_224'),
    'cascade_convnext_l_in22k':
    ('large', 0.7, 1e-4, 0.7, 12, False, 36, [27, 33],
     'convnext_large_22k_224'),
    'cascade_convnext_xl_in22k':
    ('xlarge', 0.8, 1e-4, 0.7, 12, False, 36, [27, 33],
     'convnext_xlarge_22k_224'),
    'mask_rcnn_convnext_t':
    ('tiny', 0.4, 1e-4, 0.95, 6, True, 36, [27, 33], 'convnext_tiny_1k_224'),
    'mask_rcnn_convnext_t_1x':
    ('tiny', 0.4, 1e-4, 0.95, 6, True, 12, [8, 11], 'convnext_tiny_1k_224'),
    'mask_rcnn_convnext_s_1x':
    ('small', 0.6, 1e-4, 0.95, 12, True, 12, [8, 11],
     'convnext_small_1k_224'),
    'mask_rcnn_convnext_b_1x':
    ('base', 0.7, 1e-4, 0.95, 12, True, 12, [8, 11], 'convnext_base_1k_224'),
}
# detector parameters in millions (the paper's table, 80 classes); the
# S and B Mask R-CNN counts were not published
PAPER_PARAMS = {
    'mask_rcnn_convnext_t': 48, 'mask_rcnn_convnext_t_1x': 48,
    'cascade_convnext_t': 86, 'cascade_convnext_s': 108,
    'cascade_convnext_b': 146, 'cascade_convnext_b_in22k': 146,
    'cascade_convnext_l_in22k': 255, 'cascade_convnext_xl_in22k': 407,
}
CONFIGS = sorted(TABLE)
CASCADE = [name for name in CONFIGS if name.startswith('cascade')]
MASK_RCNN = [name for name in CONFIGS if name.startswith('mask_rcnn')]

# the three cascade stages: (box target stds, IoU threshold)
CASCADE_STAGES = [([0.1, 0.1, 0.2, 0.2], 0.5),
                  ([0.05, 0.05, 0.1, 0.1], 0.6),
                  ([0.033, 0.033, 0.067, 0.067], 0.7)]

_configs: dict[str, Config] = {}


def load(name: str) -> Config:
    if name not in _configs:
        _configs[name] = Config.fromfile(osp.join(CONFIG_DIR, f'{name}.py'))
    return _configs[name]


def test_every_detection_config_is_in_the_table():
    import glob
    found = {osp.splitext(osp.basename(path))[0]
             for pattern in ('cascade_*.py', 'mask_rcnn_*.py')
             for path in glob.glob(osp.join(CONFIG_DIR, pattern))}
    assert found == set(TABLE)


@pytest.mark.parametrize('name', CONFIGS)
def test_table_row(name):
    cfg = load(name)
    row = dict(zip(COLUMNS, TABLE[name]))
    backbone = cfg.model.backbone
    assert backbone.type == 'convnext_dense.ConvNeXt'
    assert backbone.arch == row['arch']
    assert backbone.drop_path_rate == row['drop_path']
    assert backbone.layer_scale_init_value == 1.0
    assert tuple(backbone.out_indices) == (0, 1, 2, 3)
    assert backbone.init_cfg == dict(
        type='Pretrained', checkpoint=f"checkpoints/{row['checkpoint']}.pth")
    assert cfg.checkpoint == backbone.init_cfg.checkpoint

    wrapper = cfg.optim_wrapper
    assert wrapper.type == ('AmpOptimWrapper'
                            if row['fp16'] else 'OptimWrapper')
    assert wrapper.constructor == (
        'convnext_dense.LayerDecayOptimizerConstructor')
    assert wrapper.optimizer == dict(
        type='AdamW', lr=row['lr'], betas=(0.9, 0.999), weight_decay=0.05)
    assert wrapper.paramwise_cfg == dict(
        decay_rate=row['decay_rate'], decay_type='layer_wise',
        num_layers=row['num_layers'])
    assert wrapper.get('clip_grad') is None  # no gradient clipping

    assert cfg.train_cfg.max_epochs == row['epochs']
    warmup, steps = cfg.param_scheduler
    assert warmup == dict(type='LinearLR', start_factor=0.001,
                          by_epoch=False, begin=0, end=500)
    assert steps == dict(type='MultiStepLR', begin=0, end=row['epochs'],
                         by_epoch=True, milestones=row['milestones'],
                         gamma=0.1)
    # 8 GPUs x 2 images
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.auto_scale_lr.base_batch_size == 16


@pytest.mark.parametrize('name', CONFIGS)
def test_data_and_evaluation(name):
    cfg = load(name)
    dataset = cfg.train_dataloader.dataset
    assert dataset.type == 'CocoDataset' and dataset.data_root == 'data/coco/'
    flip, choice = dataset.pipeline[2:4]
    assert flip == dict(type='RandomFlip', prob=0.5)
    multiscale, (resize, crop, multiscale_again) = choice.transforms
    short_sides = list(range(480, 801, 32))
    assert multiscale == [dict(
        type='RandomChoiceResize', keep_ratio=True,
        scales=[(1333, s) for s in short_sides])]
    assert resize.scales == [(1333, 400), (1333, 500), (1333, 600)]
    assert crop == dict(type='RandomCrop', crop_type='absolute_range',
                        crop_size=(384, 600), allow_negative_crop=True)
    assert multiscale_again == multiscale[0]
    test_pipeline = cfg.test_dataloader.dataset.pipeline
    assert dict(type='Resize', scale=(1333, 800),
                keep_ratio=True) in test_pipeline
    assert not any(t.type == 'RandomFlip' for t in test_pipeline)
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        assert evaluator.type == 'CocoMetric'
        assert evaluator.metric == ['bbox', 'segm']
        assert evaluator.ann_file == (
            'data/coco/annotations/instances_val2017.json')


@pytest.mark.parametrize('name', CONFIGS)
def test_test_settings(name):
    cfg = load(name)
    assert cfg.model.test_cfg.rcnn == dict(
        score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5),
        max_per_img=100, mask_thr_binary=0.5)
    assert cfg.model.test_cfg.rpn.max_per_img == 1000
    mask_head = cfg.model.roi_head.mask_head
    assert (mask_head.type, mask_head.num_convs) == ('FCNMaskHead', 4)
    assert cfg.model.roi_head.mask_roi_extractor.roi_layer.output_size == 14


@pytest.mark.parametrize('name', CASCADE)
def test_cascade_heads(name):
    cfg = load(name)
    roi_head = cfg.model.roi_head
    assert roi_head.type == 'CascadeRoIHead' and roi_head.num_stages == 3
    assert roi_head.stage_loss_weights == [1, 0.5, 0.25]
    assert cfg.model.train_cfg.rpn_proposal.max_per_img == 2000
    assert len(roi_head.bbox_head) == len(cfg.model.train_cfg.rcnn) == 3
    for head, stage, (stds, iou) in zip(roi_head.bbox_head,
                                        cfg.model.train_cfg.rcnn,
                                        CASCADE_STAGES):
        assert head.type == 'ConvFCBBoxHead'
        assert (head.num_shared_convs, head.num_shared_fcs) == (4, 1)
        assert (head.conv_out_channels, head.fc_out_channels) == (256, 1024)
        assert head.norm_cfg == dict(type='SyncBN', requires_grad=True)
        assert head.bbox_coder.target_stds == stds
        assert head.reg_class_agnostic is False
        assert head.reg_decoded_bbox is True
        assert head.loss_bbox == dict(type='GIoULoss', loss_weight=10.0)
        assert stage.assigner.pos_iou_thr == stage.assigner.neg_iou_thr \
            == stage.assigner.min_pos_iou == iou
        assert stage.mask_size == 28


@pytest.mark.parametrize('name', MASK_RCNN)
def test_mask_rcnn_heads(name):
    cfg = load(name)
    head = cfg.model.roi_head.bbox_head
    assert head.type == 'Shared2FCBBoxHead'
    assert head.loss_bbox == dict(type='L1Loss', loss_weight=1.0)
    assert cfg.model.train_cfg.rpn_proposal.max_per_img == 1000


@pytest.mark.parametrize('name', CONFIGS)
def test_neck_matches_backbone(name):
    cfg = load(name)
    backbone = cfg.model.backbone
    with torch.device('meta'):  # no memory for the large archs
        model = ConvNeXt(arch=backbone.arch, out_indices=backbone.out_indices)
    assert list(cfg.model.neck.in_channels) == list(model.out_channels)
    assert model.num_layers == cfg.optim_wrapper.paramwise_cfg.num_layers


@pytest.mark.parametrize('name', sorted(PAPER_PARAMS))
def test_parameter_count_matches_the_paper(name):
    from mmdet.registry import MODELS
    model_cfg = copy.deepcopy(load(name).model)
    model_cfg.backbone.init_cfg = None
    init_default_scope('mmdet')
    with torch.device('meta'):  # counts without allocating
        model = MODELS.build(model_cfg)
    params = sum(p.numel() for p in model.parameters())
    assert round(params / 1e6) == PAPER_PARAMS[name]


def tiny_detector(cfg: Config) -> torch.nn.Module:
    """Build cfg's detector with the 'test' arch and few RoIs, on CPU."""
    from mmdet.registry import MODELS
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.update(arch='test', init_cfg=None)
    model_cfg.neck.in_channels = list(ConvNeXt(arch='test').out_channels)
    # the heads keep their size; only the sampling shrinks, for speed (at
    # test time: the 1000 proposals of a 64x64 image through three full
    # cascade stages took 10 s a prediction)
    model_cfg.train_cfg.rpn_proposal.max_per_img = 32
    model_cfg.test_cfg.rpn.max_per_img = 32
    rcnn = model_cfg.train_cfg.rcnn
    for stage in (rcnn if isinstance(rcnn, list) else [rcnn]):
        stage.sampler.num = 16
    init_default_scope('mmdet')
    # SyncBN needs a process group; the Runner reverts it the same way
    return revert_sync_batchnorm(MODELS.build(model_cfg))


@pytest.mark.parametrize('name', CONFIGS)
def test_builds_and_computes_losses(name):
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    torch.manual_seed(0)
    model = tiny_detector(load(name))
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    mask = np.zeros((1, 64, 64), np.uint8)
    mask[0, 10:50, 8:40] = 1
    sample = DetDataSample(metainfo=dict(
        img_shape=(64, 64), ori_shape=(64, 64), scale_factor=(1., 1.)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[8., 10., 40., 50.]]),
        labels=torch.tensor([3]),
        masks=BitmapMasks(mask, 64, 64))
    data = model.data_preprocessor(
        dict(inputs=[image], data_samples=[sample]), training=True)
    losses = model(**data, mode='loss')
    stages = ['s0.', 's1.', 's2.'] if name in CASCADE else ['']
    for prefix in stages:
        for key in ('loss_cls', 'loss_bbox', 'loss_mask'):
            assert prefix + key in losses
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total)
    total.backward()
    grad = model.backbone.downsample_layers[0][0].weight.grad
    assert grad is not None and grad.abs().sum() > 0
