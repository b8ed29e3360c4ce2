"""Layer decay combined with a head's own multipliers (``custom_keys``), as
the Mask2Former configs use it: the backbone at a fraction of the base lr on
top of its layer scales, and no weight decay on query and level embeddings.

As in test_layer_decay.py, decay_rate=2 and power-of-two multipliers make
every expected lr exact; ids and weight decays come from that file's tables.
"""
from __future__ import annotations

import pytest
import torch.nn as nn

from convnext_dense.engine.layer_decay import layer_decay_param_groups
from convnext_dense.models import ConvNeXt

from .test_layer_decay import (BASE_LR, BASE_WD, NUM_LAYERS, T_DEPTHS, build,
                               expected_layer_id, expected_weight_decay,
                               settings_by_name)

BACKBONE_MULT = 2.**-3
CUSTOM_KEYS = {
    'backbone': dict(lr_mult=BACKBONE_MULT, decay_mult=1.0),
    # longer than 'backbone', so it wins for the output norm of stage 3
    'backbone.norm3': dict(lr_mult=2.**-5),
    'query_embed': dict(lr_mult=1.0, decay_mult=0.0),
    'level_embed': dict(decay_mult=0.0),
    'head.proj': dict(lr_mult=2., decay_mult=0.5),
}


class StandInQueryHead(nn.Module):
    """A ConvNeXt with a head laid out like Mask2Former's: query and level
    embeddings, a projection, a GroupNorm."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = ConvNeXt(arch=dict(depths=T_DEPTHS, dims=(8, ) * 4))
        self.head = nn.Module()
        self.head.query_embed = nn.Embedding(4, 8)
        self.head.query_feat = nn.Embedding(4, 8)
        self.head.level_embed = nn.Embedding(3, 8)
        self.head.proj = nn.Conv2d(8, 8, 1)
        self.head.norm = nn.GroupNorm(2, 8)


def expected(name: str, decay_type: str) -> tuple[float, float]:
    """(lr, weight decay) of a parameter, written from the keys above."""
    n = NUM_LAYERS[T_DEPTHS]
    scale = 2.**(n + 1 - expected_layer_id(name, T_DEPTHS, decay_type))
    if name.startswith('backbone.norm3.'):
        return BASE_LR * scale * 2.**-5, 0.  # 1-D: no decay anyway
    if name.startswith('backbone.'):
        return BASE_LR * scale * BACKBONE_MULT, expected_weight_decay(name)
    no_decay = name.endswith('.bias') or name.startswith('head.norm.')
    if name.startswith(('head.query_embed.', 'head.level_embed.')):
        return BASE_LR, 0.
    if name.startswith('head.proj.'):
        return BASE_LR * 2., 0. if no_decay else BASE_WD * 0.5
    return BASE_LR, 0. if no_decay else BASE_WD  # query_feat, norm


@pytest.mark.parametrize('decay_type', ['layer_wise', 'stage_wise'])
def test_every_parameter_gets_scale_times_multiplier(decay_type):
    model = StandInQueryHead()
    optimizer = build(model, decay_rate=2., decay_type=decay_type,
                      custom_keys=CUSTOM_KEYS).optimizer
    settings = settings_by_name(model, optimizer)
    assert set(settings) == {name for name, _ in model.named_parameters()}
    for name, group in settings.items():
        lr, weight_decay = expected(name, decay_type)
        assert (group['lr'], group['weight_decay']) == (lr, weight_decay), name
        assert group['lr'] == BASE_LR * group['lr_scale'], name
    # stage_wise T: downsamples (id 0) at 2 ** 7 x 1/8 = 16 x base lr
    if decay_type == 'stage_wise':
        stem = settings['backbone.downsample_layers.0.0.weight']
        assert stem['lr'] == BASE_LR * 16 and stem['layer_id'] == 0


def test_groups_are_ordered_by_layer_then_decay_then_lr():
    groups = layer_decay_param_groups(
        StandInQueryHead(), BASE_LR, BASE_WD, 2., 'stage_wise',
        custom_keys=CUSTOM_KEYS, with_names=True)
    keys = [(g['layer_id'], -g['weight_decay'], -g['lr']) for g in groups]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    # the last layer (N + 1 = 7): full decay, the projection's weight
    # (decay x0.5, lr x2), then every no-decay group, fastest first
    top = [(g['weight_decay'], g['lr'] / BASE_LR) for g in groups
           if g['layer_id'] == 7]
    assert top == [(BASE_WD, 1.), (BASE_WD * 0.5, 2.), (0., 2.), (0., 1.),
                   (0., 2.**-3), (0., 2.**-5)]


def test_without_custom_keys_the_groups_are_unchanged():
    model = StandInQueryHead()
    plain = layer_decay_param_groups(model, BASE_LR, BASE_WD, 2.)
    empty = layer_decay_param_groups(model, BASE_LR, BASE_WD, 2.,
                                     custom_keys={})
    table = [[(g['lr'], g['weight_decay'], g['layer_id'],
               [id(p) for p in g['params']]) for g in groups]
             for groups in (plain, empty)]
    assert table[0] == table[1]


@pytest.mark.parametrize('keys, message', [
    ({'backbone': dict(lr_mul=0.1)}, r"may set only \('lr_mult', "),
    ({'backbone': dict(lr_mult=-0.1)}, 'must not be negative'),
    ({'query_embd': dict(decay_mult=0.)}, r"\['query_embd'\] match no"),
])
def test_bad_custom_keys_are_refused(keys, message):
    with pytest.raises(ValueError, match=message):
        build(StandInQueryHead(), decay_rate=0.9, custom_keys=keys)
