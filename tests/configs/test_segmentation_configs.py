"""Tests of the segmentation configs (configs/upernet_convnext_*.py).

Every config is checked against the paper's settings (docs/reference.md §5),
written out below as a table; its heads must take exactly what its backbone
gives; and every config builds its segmentor (with the tiny 'test' backbone
substituted) and computes finite losses and a sliding-window prediction on
one 64x64 image.
"""
from __future__ import annotations

import copy
import glob
import math
import os.path as osp

import pytest
import torch

mmseg = pytest.importorskip('mmseg')

from mmengine.config import Config  # noqa: E402
from mmengine.model import revert_sync_batchnorm  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.structures import PixelData  # noqa: E402

from convnext_dense.models import ConvNeXt  # noqa: E402

CONFIG_DIR = osp.join(osp.dirname(__file__), '..', '..', 'configs')

# docs/reference.md §5, one row per config; checkpoint names are the official
# ImageNet files under checkpoints/
COLUMNS = ('arch', 'crop', 'drop_path', 'lr', 'num_layers', 'fp16',
           'checkpoint')
TABLE = {
    'upernet_convnext_t':
    ('tiny', 512, 0.4, 1e-4, 6, True, 'convnext_tiny_1k_224'),
    'upernet_convnext_s':
    ('small', 512, 0.3, 1e-4, 12, True, 'convnext_small_1k_224'),
    'upernet_convnext_b':
    ('base', 512, 0.4, 1e-4, 12, True, 'convnext_base_1k_224'),
    'upernet_convnext_b_in22k_640':
    ('base', 640, 0.4, 1e-4, 12, True, 'convnext_base_22k_224'),
    'upernet_convnext_l_in22k_640':
    ('large', 640, 0.4, 1e-4, 12, False, 'convnext_large_22k_224'),
    'upernet_convnext_xl_in22k_640':
    ('xlarge', 640, 0.4, 8e-5, 12, False, 'convnext_xlarge_22k_224'),
}
CONFIGS = sorted(TABLE)
# per crop size: (resize scale, sliding-window stride)
RESOLUTION = {512: ((2048, 512), 341), 640: ((2560, 640), 426)}
TTA_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)

_configs: dict[str, Config] = {}


def load(name: str) -> Config:
    if name not in _configs:
        _configs[name] = Config.fromfile(osp.join(CONFIG_DIR, f'{name}.py'))
    return _configs[name]


def test_every_segmentation_config_is_in_the_table():
    found = {osp.splitext(osp.basename(path))[0]
             for path in glob.glob(osp.join(CONFIG_DIR, 'upernet_*.py'))}
    assert found == set(TABLE)


@pytest.mark.parametrize('name', CONFIGS)
def test_table_row(name):
    cfg = load(name)
    row = dict(zip(COLUMNS, TABLE[name]))
    assert cfg.custom_imports == dict(imports=['convnext_dense'],
                                      allow_failed_imports=False)
    model = cfg.model
    assert model.type == 'EncoderDecoder' and model.pretrained is None
    backbone = model.backbone
    assert backbone == dict(
        type='convnext_dense.ConvNeXt', arch=row['arch'],
        out_indices=(0, 1, 2, 3), drop_path_rate=row['drop_path'],
        layer_scale_init_value=1.0,
        init_cfg=dict(type='Pretrained',
                      checkpoint=f"checkpoints/{row['checkpoint']}.pth"))
    assert cfg.checkpoint == backbone.init_cfg.checkpoint

    # heads: UPerHead (1, 2, 3, 6), 512 ch, dropout 0.1, SyncBN; FCN aux on
    # stage 2, 256 ch, loss weight 0.4; 150 classes
    head, aux = model.decode_head, model.auxiliary_head
    assert head.type == 'UPerHead'
    assert tuple(head.pool_scales) == (1, 2, 3, 6)
    assert head.channels == 512 and head.dropout_ratio == 0.1
    assert list(head.in_index) == [0, 1, 2, 3]
    assert head.loss_decode == dict(type='CrossEntropyLoss',
                                    use_sigmoid=False, loss_weight=1.0)
    assert aux.type == 'FCNHead' and aux.in_index == 2
    assert aux.channels == 256 and aux.num_convs == 1
    assert aux.loss_decode.loss_weight == 0.4
    for h in (head, aux):
        assert h.num_classes == 150
        assert h.norm_cfg == dict(type='SyncBN', requires_grad=True)

    # optimizer: AdamW, stage-wise decay 0.9; fp16 AMP for T/S/B only
    wrapper = cfg.optim_wrapper
    assert wrapper.type == ('AmpOptimWrapper'
                            if row['fp16'] else 'OptimWrapper')
    assert 'loss_scale' not in wrapper or wrapper.loss_scale == 'dynamic'
    assert wrapper.constructor == (
        'convnext_dense.LayerDecayOptimizerConstructor')
    assert wrapper.optimizer == dict(
        type='AdamW', lr=row['lr'], betas=(0.9, 0.999), weight_decay=0.05)
    assert wrapper.paramwise_cfg == dict(
        decay_rate=0.9, decay_type='stage_wise',
        num_layers=row['num_layers'])
    assert wrapper.get('clip_grad') is None

    # schedule: warm-up 1500 iterations from 1e-6, poly (power 1, to 0)
    # until 160k; batch 2 per GPU x 8 GPUs
    warmup, poly = cfg.param_scheduler
    assert warmup == dict(type='LinearLR', start_factor=1e-6,
                          by_epoch=False, begin=0, end=1500)
    assert poly == dict(type='PolyLR', power=1.0, eta_min=0.0,
                        by_epoch=False, begin=1500, end=160000)
    assert cfg.train_cfg.type == 'IterBasedTrainLoop'
    assert cfg.train_cfg.max_iters == 160000
    assert cfg.train_cfg.val_interval == 16000
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.auto_scale_lr.base_batch_size == 16
    # recoverable training (configs/_base_/reliability.py)
    assert cfg.default_hooks.checkpoint == dict(
        type='convnext_dense.AtomicCheckpointHook', by_epoch=False,
        interval=16000)
    assert [h.type for h in cfg.custom_hooks] == [
        'convnext_dense.NonFiniteLossHook',
        'convnext_dense.ResumableRandomnessHook']

    # data: ADE20K, reduce_zero_label, the paper's training pipeline
    crop = (row['crop'], row['crop'])
    scale, stride = RESOLUTION[row['crop']]
    for loader in (cfg.train_dataloader, cfg.val_dataloader,
                   cfg.test_dataloader):
        assert loader.dataset.type == 'ADE20KDataset'
        assert loader.dataset.data_root == 'data/ade/ADEChallengeData2016'
    train = [dict(t) for t in cfg.train_dataloader.dataset.pipeline]
    assert [t['type'] for t in train] == [
        'LoadImageFromFile', 'LoadAnnotations', 'RandomResize', 'RandomCrop',
        'RandomFlip', 'PhotoMetricDistortion', 'PackSegInputs']
    assert train[1]['reduce_zero_label'] is True
    assert train[2] == dict(type='RandomResize', scale=scale,
                            ratio_range=(0.5, 2.0), keep_ratio=True)
    assert train[3] == dict(type='RandomCrop', crop_size=crop,
                            cat_max_ratio=0.75)
    assert train[4]['prob'] == 0.5
    # the preprocessor pads every crop to the crop size, labels with 255
    preprocessor = model.data_preprocessor
    assert tuple(preprocessor['size']) == crop
    assert (preprocessor['pad_val'], preprocessor['seg_pad_val']) == (0, 255)
    test = [dict(t) for t in cfg.test_dataloader.dataset.pipeline]
    assert test[1] == dict(type='Resize', scale=scale, keep_ratio=True)
    assert test[2] == dict(type='LoadAnnotations', reduce_zero_label=True)
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        assert evaluator.type == 'IoUMetric'
        assert evaluator.iou_metrics == ['mIoU']

    # single-scale test: sliding crop-size windows with 1/3 overlap
    assert stride == row['crop'] * 2 // 3
    assert model.test_cfg == dict(mode='slide', crop_size=crop,
                                  stride=(stride, stride))


@pytest.mark.parametrize('name', CONFIGS)
def test_tta_is_multi_scale_and_flip(name):
    """tools/test.py --tta wraps the model in cfg.tta_model and tests with
    cfg.tta_pipeline: the test scale times each ratio, plain and flipped."""
    cfg = load(name)
    scale, _ = RESOLUTION[TABLE[name][1]]
    assert cfg.tta_model.type == 'SegTTAModel'
    load_image, tta = cfg.tta_pipeline
    assert load_image.type == 'LoadImageFromFile'
    assert tta.type == 'TestTimeAug'
    resizes, flips, annotations, pack = tta.transforms
    assert [r.scale for r in resizes] == [
        (int(scale[0] * r), int(scale[1] * r)) for r in TTA_RATIOS]
    assert all(r.type == 'Resize' and r.keep_ratio for r in resizes)
    assert [(f.type, f.prob, f.direction) for f in flips] == [
        ('RandomFlip', 0., 'horizontal'), ('RandomFlip', 1., 'horizontal')]
    assert [t.type for t in annotations] == ['LoadAnnotations']
    assert [t.type for t in pack] == ['PackSegInputs']


def meta_backbone(cfg: Config) -> ConvNeXt:
    """The config's backbone, built on the meta device (no memory, no
    weights) so even XL costs nothing."""
    kwargs = {k: v for k, v in cfg.model.backbone.items()
              if k not in ('type', 'init_cfg')}
    with torch.device('meta'):
        return ConvNeXt(**kwargs)


@pytest.mark.parametrize('name', CONFIGS)
def test_heads_take_what_the_backbone_gives(name):
    cfg = load(name)
    backbone = meta_backbone(cfg)
    head, aux = cfg.model.decode_head, cfg.model.auxiliary_head
    assert len(backbone.out_channels) == 4
    assert list(head.in_channels) == [
        backbone.out_channels[i] for i in head.in_index]
    assert aux.in_channels == backbone.out_channels[aux.in_index]
    # the decay rule's N = 3 + ceil(stage-2 depth / 3) for this arch
    assert cfg.optim_wrapper.paramwise_cfg.num_layers == (
        backbone.num_layers) == 3 + math.ceil(backbone.depths[2] / 3)


def tiny_model_cfg(cfg: Config) -> dict:
    """The config's model with the 'test' arch and no pretrained weights;
    head input widths follow the tiny backbone. The heads keep their 512/256
    channels; inputs are not padded to the crop size (512 or 640 costs
    minutes here; test_preprocessor_pads_to_the_crop checks the padding)."""
    model = copy.deepcopy(cfg.model)
    model.data_preprocessor.size = None
    model.data_preprocessor.size_divisor = 32  # 64x64 stays 64x64
    model.backbone.arch = 'test'
    model.backbone.init_cfg = None
    channels = ConvNeXt('test').out_channels
    model.decode_head.in_channels = [
        channels[i] for i in model.decode_head.in_index]
    model.auxiliary_head.in_channels = channels[model.auxiliary_head.in_index]
    return model


def two_samples(num_classes: int) -> tuple[list, list]:
    """Two random 64x64 images with labels; the top 8 rows are 255."""
    from mmseg.structures import SegDataSample
    images, samples = [], []
    for _ in range(2):
        images.append(torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_shape=(64, 64),
                                             ori_shape=(64, 64)))
        label = torch.randint(0, num_classes, (1, 64, 64))
        label[:, :8] = 255  # "other" (ADE20K label 0): ignored
        sample.gt_sem_seg = PixelData(data=label)
        samples.append(sample)
    return images, samples


@pytest.mark.parametrize('name', CONFIGS)
def test_preprocessor_pads_to_the_crop(name):
    from mmseg.registry import MODELS

    init_default_scope('mmseg')
    cfg = load(name)
    preprocessor = MODELS.build(cfg.model.data_preprocessor)
    images, samples = two_samples(num_classes=150)
    data = preprocessor(dict(inputs=images, data_samples=samples),
                        training=True)
    crop = TABLE[name][1]
    assert data['inputs'].shape == (2, 3, crop, crop)
    assert (data['inputs'][:, :, 64:] == 0).all()  # pad_val 0
    for sample, padded in zip(samples, data['data_samples']):
        label = padded.gt_sem_seg.data
        assert label.shape == (1, crop, crop)
        assert (label[:, :64, :64] == sample.gt_sem_seg.data).all()
        assert (label[:, 64:] == 255).all() and (label[:, :, 64:] == 255).all()


@pytest.mark.parametrize('name', CONFIGS)
def test_builds_and_computes_losses(name):
    from mmseg.registry import MODELS

    init_default_scope('mmseg')
    cfg = load(name)
    torch.manual_seed(0)
    # SyncBN needs a process group; mmengine's Runner reverts it the same
    # way when training on one process
    model = revert_sync_batchnorm(MODELS.build(tiny_model_cfg(cfg)))
    model.init_weights()
    assert isinstance(model.backbone, ConvNeXt)

    # two images: the pooling branch's BatchNorm on a 1x1 map needs more
    # than one value per channel in training
    images, samples = two_samples(num_classes=150)
    data = model.data_preprocessor(
        dict(inputs=images, data_samples=samples), training=True)
    assert data['inputs'].shape == (2, 3, 64, 64)

    model.train()
    losses = model(**data, mode='loss')
    assert set(losses) == {'decode.loss_ce', 'decode.acc_seg',
                           'aux.loss_ce', 'aux.acc_seg'}
    # untrained 150-way softmax: cross entropy near ln(150) = 5.01 on the
    # 7/8 of pixels not ignored (mmseg averages over all pixels); the
    # auxiliary head's is weighted by 0.4
    expected = math.log(150) * 7 / 8
    assert abs(losses['decode.loss_ce'].item() - expected) < 1
    assert abs(losses['aux.loss_ce'].item() - 0.4 * expected) < 0.4
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert model.backbone.downsample_layers[0][0].weight.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(
            dict(inputs=images[:1], data_samples=samples[:1]),
            training=False)
        [result] = model(**data, mode='predict')  # sliding window
    assert result.seg_logits.data.shape == (150, 64, 64)
    assert result.pred_sem_seg.data.shape == (1, 64, 64)


def test_missing_checkpoint_names_the_file(tmp_path, monkeypatch):
    """Without the ImageNet file, init_weights fails at once, naming it."""
    cfg = load('upernet_convnext_t')
    monkeypatch.chdir(tmp_path)  # no checkpoints/ here
    backbone = ConvNeXt('test', init_cfg=cfg.model.backbone.init_cfg)
    with pytest.raises(FileNotFoundError,
                       match='checkpoints/convnext_tiny_1k_224.pth'):
        backbone.init_weights()


def test_demo_config_changes_only_what_the_cpu_needs():
    """configs/demo/upernet_convnext_demo.py is upernet_convnext_t.py with
    a tiny backbone, narrow heads, 128 px toy data, a short schedule and
    fp32; the recipe (heads, loss weights, optimizer, decay, scheduler
    shapes, augmentation, slide test, TTA) is the paper's."""
    from convnext_dense.toy_data.toy_ade import CLASSES, PALETTE

    demo = Config.fromfile(
        osp.join(CONFIG_DIR, 'demo', 'upernet_convnext_demo.py'))
    base = load('upernet_convnext_t')

    def without(d: dict, *keys: str) -> dict:
        return {k: v for k, v in d.items() if k not in keys}

    model, base_model = demo.model, base.model
    assert without(model.backbone, 'arch', 'drop_path_rate', 'init_cfg') == (
        without(base_model.backbone, 'arch', 'drop_path_rate', 'init_cfg'))
    assert model.backbone.arch == 'test' and model.backbone.init_cfg is None
    channels = ConvNeXt('test').out_channels
    for name in ('decode_head', 'auxiliary_head'):
        head, base_head = model[name], base_model[name]
        changed = ('in_channels', 'channels', 'num_classes')
        assert without(head, *changed) == without(base_head, *changed)
        assert head.num_classes == len(CLASSES)
    assert list(model.decode_head.in_channels) == list(channels)
    assert model.auxiliary_head.in_channels == channels[2]
    assert model.test_cfg == dict(mode='slide', crop_size=(128, 128),
                                  stride=(85, 85))  # floor(2/3 x 128)

    # the toy data set as convnext_dense.toy_data.toy_ade writes it
    for loader in (demo.train_dataloader, demo.val_dataloader,
                   demo.test_dataloader):
        dataset = loader.dataset
        assert dataset.type == 'BaseSegDataset'
        assert dataset.data_root == 'data/toy_ade'
        assert (dataset.img_suffix, dataset.seg_map_suffix) == ('.jpg',
                                                                '.png')
        assert dataset.reduce_zero_label is True
        assert tuple(dataset.metainfo.classes) == CLASSES
        assert [tuple(c) for c in dataset.metainfo.palette] == list(PALETTE)
    # the same augmentation, scaled by 128 / 512
    train = [dict(t) for t in demo.train_dataloader.dataset.pipeline]
    base_train = [dict(t) for t in base.train_dataloader.dataset.pipeline]
    assert [t['type'] for t in train] == [t['type'] for t in base_train]
    assert train[2]['scale'] == (512, 128)
    assert train[2]['ratio_range'] == base_train[2]['ratio_range']
    assert train[3] == dict(type='RandomCrop', crop_size=(128, 128),
                            cat_max_ratio=0.75)
    resizes = demo.tta_pipeline[1].transforms[0]
    assert [r.scale for r in resizes] == [
        (int(512 * r), int(128 * r)) for r in TTA_RATIOS]

    # the same optimizer and decay; fp32, lr for training from scratch
    wrapper = demo.optim_wrapper
    assert wrapper.type == 'OptimWrapper'
    assert without(wrapper.optimizer, 'lr') == without(
        base.optim_wrapper.optimizer, 'lr')
    assert wrapper.paramwise_cfg == dict(
        base.optim_wrapper.paramwise_cfg,
        num_layers=ConvNeXt('test').num_layers)
    warmup, poly = demo.param_scheduler
    assert (warmup.type, warmup.start_factor) == ('LinearLR', 1e-6)
    assert (poly.type, poly.power, poly.eta_min) == ('PolyLR', 1.0, 0.0)
    assert warmup.end == poly.begin
    assert poly.end == demo.train_cfg.max_iters
