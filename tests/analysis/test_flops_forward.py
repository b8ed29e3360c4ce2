"""The forward counted per kind of model
(convnext_dense/analysis/flops_forward.py), through config_complexity.

The detection convention (box heads on 1000 proposals, mask heads on 100)
is checked by the cost one more RoI adds, computed by hand from the head's
layer sizes; DINO's by the linear layers one more decoder layer, encoder
layer or query adds, computed the same way.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from convnext_dense.analysis.complexity import (Complexity,
                                                config_complexity,
                                                count_complexity)
from convnext_dense.models import ConvNeXt

REPO = Path(__file__).resolve().parents[2]
needs_mm = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ('mmdet', 'mmseg')),
    reason='mmdet and mmseg are needed')


TINY_CASCADE = """
_base_ = '{repo}/configs/cascade_convnext_t.py'
channels = 32
model = dict(
    backbone=dict(arch='test', init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=channels),
    rpn_head=dict(in_channels=channels, feat_channels=channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels),
        bbox_head=[
            dict(head, in_channels=channels, conv_out_channels=channels,
                 fc_out_channels=64, num_classes=3)
            for head in _base_.model.roi_head.bbox_head
        ],
        mask_roi_extractor=dict(out_channels=channels),
        mask_head=dict(in_channels=channels, conv_out_channels=channels,
                       num_classes=3)))
"""

TINY_UPERNET = """
_base_ = '{repo}/configs/upernet_convnext_t.py'
model = dict(
    backbone=dict(arch='test', init_cfg=None),
    decode_head=dict(in_channels=[16, 32, 64, 128], channels=16,
                     num_classes=5),
    auxiliary_head=dict(in_channels=64, channels=16, num_classes=5))
"""


def tiny_config(text: str, tmp_path: Path, **options) -> Config:
    path = tmp_path / 'tiny.py'
    path.write_text(text.format(repo=REPO))
    cfg = Config.fromfile(str(path))
    cfg.merge_from_dict(options)
    return cfg


@needs_mm
def test_detector_counts_box_heads_per_proposal_mask_heads_per_roi(
        tmp_path):
    """Each extra proposal costs three box heads; each extra mask RoI three
    mask heads (cascade stages), as computed from the layer sizes."""
    cfg = tiny_config(TINY_CASCADE, tmp_path)
    size = (96, 64)

    def count(proposals: int, mask_rois: int) -> Complexity:
        return config_complexity(cfg, size, num_proposals=proposals,
                                 num_mask_rois=mask_rois)

    base, more = count(20, 10), count(30, 15)
    c, fc, classes, stages = 32, 64, 3, 3
    # 4 shared 3x3 convs on 7x7 RoI features, 1 fc, class scores (+bg),
    # class-specific box deltas
    box_conv = 4 * (7 * 7 * c * c * 9)
    box_linear = 7 * 7 * c * fc + fc * (classes + 1) + fc * 4 * classes
    # 4 3x3 convs at 14x14, 2x2 deconv to 28x28 (counted per input pixel),
    # 1x1 class logits at 28x28
    mask_conv = (4 * (14 * 14 * c * c * 9) + 14 * 14 * c * c * 4 +
                 28 * 28 * c * classes)

    def delta(op: str) -> int:
        return more.by_operator.get(op, 0) - base.by_operator.get(op, 0)

    # 10 more proposals through 3 box heads, 5 more RoIs through 3 mask
    # heads (all 10 would add 5 * stages * mask_conv more)
    assert delta('conv') == stages * (10 * box_conv + 5 * mask_conv)
    assert delta('linear') == stages * 10 * box_linear
    assert base.params == more.params
    assert base.input_size == size


@needs_mm
def test_segmentor_counts_decode_head_not_auxiliary(tmp_path):
    cfg = tiny_config(TINY_UPERNET, tmp_path)
    with_aux = config_complexity(cfg, (128, 64))
    cfg.model.auxiliary_head = None
    without_aux = config_complexity(cfg, (128, 64))
    # the auxiliary FCN head has weights but no cost at test time
    assert with_aux.params > without_aux.params
    assert with_aux.flops == without_aux.flops > 0


@needs_mm
@pytest.mark.slow  # 20-27 s on two busy cores
def test_mask2former_counts_every_decoder_layer():
    """The CPU demo's Mask2Former (tiny backbone, 32-channel head) with 3,
    6 and 9 decoder layers: each 3 more add the same multiply-adds (the
    layers and their predictions are alike), and each 3 the same parameters;
    the head costs more than nothing."""
    cfg = Config.fromfile(
        str(REPO / 'configs' / 'demo' / 'mask2former_convnext_demo.py'))
    counts = []
    for layers in (3, 6, 9):
        cfg.model.decode_head.transformer_decoder.num_layers = layers
        counts.append(config_complexity(cfg, (64, 64)))
    flops = [c.flops for c in counts]
    assert flops[1] - flops[0] == flops[2] - flops[1] > 0
    params = [c.params for c in counts]
    assert params[1] - params[0] == params[2] - params[1] > 0
    backbone = count_complexity(ConvNeXt('test'),
                                (torch.zeros(1, 3, 64, 64), ), (64, 64))
    assert flops[0] > backbone.flops


def dino_linear_per_layer(cfg: Config, tokens: int) -> dict[str, int]:
    """Multiply-adds of the linear layers that one more DINO decoder layer,
    encoder layer or query adds, from the layer sizes of mmdet's DINO:
    deformable attention (value projection on every memory token; sampling
    offsets, attention weights and output projection per query), the FFN,
    the decoder's self-attention (q, k, v and output projections), its
    reference-point MLP (2d -> d -> d) and box refinement (d -> d -> d -> 4),
    and the head's class and box branches on the layer's output."""
    model = cfg.model
    d = model.encoder.layer_cfg.self_attn_cfg.embed_dims
    ffn = model.encoder.layer_cfg.ffn_cfg.feedforward_channels
    attention = model.decoder.layer_cfg.cross_attn_cfg
    heads, levels = attention.get('num_heads', 8), attention.num_levels
    points = attention.get('num_points', 4)
    # offsets (x, y) and weights per head, level and point
    sampling = d * heads * levels * points * 3
    deformable_per_query = sampling + d * d  # + output projection
    value = tokens * d * d
    ffn_per_query = 2 * d * ffn
    box_branch = 2 * d * d + 4 * d
    decoder_per_query = (4 * d * d + deformable_per_query + ffn_per_query +
                         (2 * d * d + d * d) + box_branch +
                         d * model.bbox_head.num_classes + box_branch)
    return dict(
        encoder=tokens * (deformable_per_query + ffn_per_query) + value,
        decoder=model.num_queries * decoder_per_query + value,
        decoder_per_query=decoder_per_query)


@needs_mm
def test_dino_counts_encoder_decoder_queries_and_heads():
    """The CPU demo's DINO (tiny backbone, 30 queries, 2 + 2 layers) at
    64x64: 4 levels of 8x8, 4x4, 2x2 and 1x1 = 85 memory tokens. Two more
    decoder layers add twice the linear cost of a decoder layer with its
    head predictions, two more encoder layers twice an encoder layer's, and
    30 more queries 30 times a query's in every decoder layer; the total
    grows by equal amounts per pair of decoder layers."""
    cfg = Config.fromfile(
        str(REPO / 'configs' / 'demo' / 'dino_convnext_demo.py'))
    expected = dino_linear_per_layer(cfg, tokens=8 * 8 + 4 * 4 + 2 * 2 + 1)
    size = (64, 64)

    def count(**model) -> Complexity:
        changed = cfg.copy()
        changed.merge_from_dict({f'model.{key}': value
                                 for key, value in model.items()})
        return config_complexity(changed, size)

    base = count()
    decoders = [base, count(**{'decoder.num_layers': 4}),
                count(**{'decoder.num_layers': 6})]
    linear = [c.by_operator['linear'] for c in decoders]
    assert linear[1] - linear[0] == linear[2] - linear[1] == \
        2 * expected['decoder']
    flops = [c.flops for c in decoders]
    assert flops[1] - flops[0] == flops[2] - flops[1] > 0
    encoders = count(**{'encoder.num_layers': 4})
    assert encoders.by_operator['linear'] - linear[0] == \
        2 * expected['encoder']
    queries = count(num_queries=60)
    assert queries.by_operator['linear'] - linear[0] == \
        2 * 30 * expected['decoder_per_query']
    assert base.input_size == size


@needs_mm
@pytest.mark.parametrize('model,size', [
    ('tiny_cascade', (96, 64)),
    ('tiny_upernet', (128, 64)),
    ('demo/mask2former_convnext_demo', (64, 64)),
    ('demo/dino_convnext_demo', (64, 64)),
])
def test_shapes_only_counts_what_computing_counts(model, size, tmp_path):
    """The default count (convolutions and matrix products make zeros of
    their shape) equals the count of the computed forward, operator by
    operator, for each kind of wrapper: RoI heads, UPerHead, Mask2Former's
    pixel decoder and queries, DINO's deformable encoder and query
    selection."""
    if model.startswith('tiny_'):
        text = TINY_CASCADE if model == 'tiny_cascade' else TINY_UPERNET
        cfg = tiny_config(text, tmp_path)
    else:
        cfg = Config.fromfile(str(REPO / 'configs' / f'{model}.py'))
    computed = config_complexity(cfg, size, compute=True)
    assert config_complexity(cfg, size) == computed
    assert computed.flops > 0
