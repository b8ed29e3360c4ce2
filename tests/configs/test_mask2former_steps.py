"""One training step and one prediction on the CPU for each Mask2Former
family (ADE20K 512 and 640, ConvNeXt-V2, COCO instance): the config's model
with the tiny backbone of its kind and a narrow head (32 channels, 4
queries, one layer each), trained through the config's own optimizer
constructor (layer decay + custom keys, gradient clipping)."""
from __future__ import annotations

import copy
import os.path as osp

import numpy as np
import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

from mmengine.config import Config  # noqa: E402
from mmengine.optim import build_optim_wrapper  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from mmengine.structures import InstanceData, PixelData  # noqa: E402

from convnext_dense.models import ConvNeXt  # noqa: E402

from .test_mask2former_configs import (head_key, load, plain,  # noqa
                                      without)


def narrow_head(head: Config, dims: int = 32, queries: int = 4) -> None:
    """Shrink a Mask2Former head config in place: ``dims`` channels
    everywhere (GN keeps its 32 groups), ``queries`` queries, one pixel-
    decoder and one transformer-decoder layer, two heads, two points."""
    head.update(feat_channels=dims, out_channels=dims, num_queries=queries)
    decoder = head.pixel_decoder
    decoder.encoder.num_layers = 1
    decoder.encoder.layer_cfg.self_attn_cfg.update(
        embed_dims=dims, num_heads=2, num_points=2)
    decoder.encoder.layer_cfg.ffn_cfg.update(embed_dims=dims,
                                             feedforward_channels=2 * dims)
    decoder.positional_encoding.num_feats = dims // 2
    head.positional_encoding.num_feats = dims // 2
    transformer = head.transformer_decoder
    transformer.num_layers = 1
    for attn in ('self_attn_cfg', 'cross_attn_cfg'):
        transformer.layer_cfg[attn].update(embed_dims=dims, num_heads=2)
    transformer.layer_cfg.ffn_cfg.update(embed_dims=dims,
                                         feedforward_channels=2 * dims)


def tiny_model(name: str):
    cfg = load(name)
    model_cfg = copy.deepcopy(cfg.model)
    arch = 'v2-test' if model_cfg.backbone.arch.startswith('v2') else 'test'
    model_cfg.backbone.update(arch=arch, init_cfg=None)
    head = model_cfg[head_key(cfg)]
    head.in_channels = list(ConvNeXt(arch).out_channels)
    narrow_head(head)
    # 12544 sampled points on a 16x16 mask would all repeat
    (head.train_cfg if 'train_cfg' in head else model_cfg.train_cfg
     ).num_points = 64
    if 'ade20k' in name:
        from mmseg.registry import MODELS
        init_default_scope('mmseg')
        model_cfg.data_preprocessor.size = (64, 64)  # not the 512/640 crop
    else:
        from mmdet.registry import MODELS
        init_default_scope('mmdet')
        model_cfg.data_preprocessor.batch_augments[0].size = (64, 64)
    torch.manual_seed(0)
    model = MODELS.build(model_cfg)
    model.init_weights()
    return cfg, model


def train_one_step(model, cfg: Config, data: dict) -> None:
    """One step through the config's own wrapper; every part learns."""
    wrapper_cfg = copy.deepcopy(cfg.optim_wrapper)
    wrapper_cfg.paramwise_cfg.pop('num_layers')  # the tiny arch has its own
    wrapper = build_optim_wrapper(model, wrapper_cfg)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    model.train()
    losses = model.train_step(data, wrapper)
    # the last layer's losses (mmseg prefixes 'decode.') and layer 0's
    for loss in ('loss_cls', 'loss_mask', 'loss_dice'):
        assert any(k.split('.')[-1] == loss and 'd0.' not in k
                   for k in losses), loss
        assert any(k.endswith(f'd0.{loss}') for k in losses), loss
    assert all(torch.isfinite(v).all() for v in losses.values())
    for part in ('backbone.downsample_layers.0.0.weight',
                 f'{head_key(cfg)}.query_feat.weight',
                 f'{head_key(cfg)}.pixel_decoder.encoder.layers.0.'
                 'self_attn.value_proj.weight'):
        assert not torch.equal(before[part],
                               dict(model.named_parameters())[part]), part


@pytest.mark.parametrize('name', [
    'mask2former_convnext_t_ade20k_512',
    'mask2former_convnext_l_in22k_ade20k_640',
    'mask2former_convnext_v2_b_ade20k_512',
])
def test_semantic_trains_and_predicts(name):
    from mmseg.structures import SegDataSample
    cfg, model = tiny_model(name)
    images, samples = [], []
    for shift in (0, 16):
        images.append(torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8))
        label = torch.full((1, 64, 64), 3)
        label[:, 16:48, shift:shift + 32] = 7
        label[:, :4] = 255  # ignored
        sample = SegDataSample(metainfo=dict(img_shape=(64, 64),
                                             ori_shape=(64, 64)))
        sample.gt_sem_seg = PixelData(data=label)
        samples.append(sample)
    train_one_step(model, cfg, dict(inputs=images, data_samples=samples))

    model.eval()
    with torch.no_grad():
        [result] = model.test_step(dict(inputs=images[:1],
                                        data_samples=samples[:1]))
    assert result.seg_logits.data.shape == (150, 64, 64)
    assert result.pred_sem_seg.data.shape == (1, 64, 64)
    assert torch.isfinite(result.seg_logits.data).all()


def test_instance_trains_and_predicts():
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    name = 'mask2former_convnext_t_coco_instance'
    cfg, model = tiny_model(name)
    image = torch.randint(0, 256, (3, 48, 64), dtype=torch.uint8)
    masks = np.zeros((2, 48, 64), np.uint8)
    masks[0, 4:30, 6:40] = 1
    masks[1, 20:44, 36:60] = 1
    sample = DetDataSample(metainfo=dict(
        img_shape=(48, 64), ori_shape=(48, 64), scale_factor=(1., 1.)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[6., 4., 40., 30.], [36., 20., 60., 44.]]),
        labels=torch.tensor([3, 17]), masks=BitmapMasks(masks, 48, 64))
    data = dict(inputs=[image], data_samples=[sample])
    train_one_step(model, cfg, data)

    model.eval()
    with torch.no_grad():
        [result] = model.test_step(
            dict(inputs=[image], data_samples=[copy.deepcopy(sample)]))
    pred = result.pred_instances
    # at most max_per_image, here limited by 4 queries x 80 classes
    assert 0 < len(pred) <= 100
    assert pred.masks.shape[1:] == (48, 64)
    assert pred.bboxes.shape[1] == 4 and torch.isfinite(pred.scores).all()


def test_demo_config_changes_only_what_the_cpu_needs():
    """configs/demo/mask2former_convnext_demo.py is the T config with the
    tiny backbone, a narrow head, toy data at 128 px, a short schedule and a
    from-scratch lr; losses, matching, optimizer structure (layer decay,
    custom keys, clipping) and the poly shape are the recipe's."""
    from convnext_dense.toy_data.toy_ade import CLASSES
    demo = plain(Config.fromfile(osp.join(
        osp.dirname(__file__), '..', '..', 'configs', 'demo',
        'mask2former_convnext_demo.py')).to_dict())
    base = plain(load('mask2former_convnext_t_ade20k_512').to_dict())
    demo, base = Config(demo), Config(base)
    head, base_head = demo.model.decode_head, base.model.decode_head
    narrowed = ('in_channels', 'feat_channels', 'out_channels', 'num_classes',
                'num_queries', 'pixel_decoder', 'positional_encoding',
                'transformer_decoder', 'loss_cls', 'train_cfg')
    assert without(head, *narrowed) == without(base_head, *narrowed)
    assert head.num_classes == len(CLASSES)
    assert head.loss_cls == dict(base_head.loss_cls,
                                 class_weight=[1.0] * len(CLASSES) + [0.1])
    assert without(head.train_cfg, 'num_points') == without(
        base_head.train_cfg, 'num_points')
    assert demo.model.backbone.arch == 'test'
    assert demo.model.backbone.init_cfg is None
    assert list(head.in_channels) == list(ConvNeXt('test').out_channels)

    wrapper, base_wrapper = demo.optim_wrapper, base.optim_wrapper
    assert without(wrapper, 'optimizer', 'paramwise_cfg') == without(
        base_wrapper, 'optimizer', 'paramwise_cfg')
    assert without(wrapper.optimizer, 'lr') == without(
        base_wrapper.optimizer, 'lr')
    assert wrapper.paramwise_cfg == dict(
        base_wrapper.paramwise_cfg, num_layers=ConvNeXt('test').num_layers)
    [poly] = demo.param_scheduler
    [base_poly] = base.param_scheduler
    assert without(poly, 'end') == without(base_poly, 'end')
    assert poly.end == demo.train_cfg.max_iters
    for loader in (demo.train_dataloader, demo.val_dataloader):
        assert loader.dataset.data_root == 'data/toy_ade'
        assert tuple(loader.dataset.metainfo.classes) == CLASSES
    train = [t.type for t in demo.train_dataloader.dataset.pipeline]
    assert train == [t.type for t in base.train_dataloader.dataset.pipeline]
