"""detrex DINO checkpoints in mmdet's names (convnext_dense/checkpoint/
detrex_dino.py).

detrex needs Detectron2, which does not install here, so its state dict is
built from the inverse mapping applied to a real mmdet DINO (the tiny
configs/dino setup of tests/configs/test_dino_configs.py), and checked
against the names detrex's modules give, written out below from detrex's
source independently of the mapping's table. Read back through the
package's mmengine loader, it loads strictly and predicts exactly as the
model it came from.
"""
from __future__ import annotations

import copy

import pytest
import torch

pytest.importorskip('mmdet')

from mmengine.runner import load_checkpoint  # noqa: E402

from convnext_dense.checkpoint.detrex_dino import (  # noqa: E402
    detrex_dino_to_mmdet, is_detrex_dino, mmdet_dino_to_detrex)
from configs.test_dino_configs import load, tiny_dino  # noqa: E402

CONFIG = 'dino_convnext_t_in22k_384_4scale_12e'


def detrex_names(backbone: list[str], layers: int = 6,
                 levels: int = 4) -> set[str]:
    """The state-dict keys of detrex's DINO (projects/dino/modeling/dino.py,
    dino_transformer.py; detrex/layers: BaseTransformerLayer's attentions /
    ffns / norms ModuleLists, FFN's Sequential, MLP's layers; the neck's
    ConvNormAct conv / norm with biases), from its module tree."""
    wb = ('weight', 'bias')
    names = {f'backbone.{key}' for key in backbone}
    for i in range(levels - 1):
        names |= {f'neck.convs.{i}.{m}.{p}' for m in ('conv', 'norm')
                  for p in wb}
    names |= {f'neck.extra_convs.0.{m}.{p}' for m in ('conv', 'norm')
              for p in wb}
    names |= {'transformer.level_embeds', 'transformer.tgt_embed.weight',
              'label_enc.weight'}
    names |= {f'transformer.{m}.{p}' for m in ('enc_output',
                                               'enc_output_norm')
              for p in wb}
    deform = ('sampling_offsets', 'attention_weights', 'value_proj',
              'output_proj')
    ffn = ('ffns.0.layers.0.0', 'ffns.0.layers.1')
    for i in range(layers):
        enc = f'transformer.encoder.layers.{i}.'
        dec = f'transformer.decoder.layers.{i}.'
        names |= {enc + f'attentions.0.{m}.{p}' for m in deform for p in wb}
        names |= {dec + f'attentions.1.{m}.{p}' for m in deform for p in wb}
        names |= {dec + f'attentions.0.attn.{m}' for m in (
            'in_proj_weight', 'in_proj_bias', 'out_proj.weight',
            'out_proj.bias')}
        for prefix, norms in ((enc, 2), (dec, 3)):
            names |= {prefix + f'{m}.{p}' for m in ffn for p in wb}
            names |= {prefix + f'norms.{n}.{p}' for n in range(norms)
                      for p in wb}
    names |= {f'transformer.decoder.{m}.{p}' for m in (
        'ref_point_head.layers.0', 'ref_point_head.layers.1', 'norm')
        for p in wb}
    # layers + 1 heads (the last scores the encoder's proposals), registered
    # on the detector and again on the decoder
    for prefix in ('', 'transformer.decoder.'):
        for k in range(layers + 1):
            names |= {f'{prefix}class_embed.{k}.{p}' for p in wb}
            names |= {f'{prefix}bbox_embed.{k}.layers.{m}.{p}'
                      for m in range(3) for p in wb}
    return names


@pytest.fixture(scope='module')
def mmdet_model():
    return tiny_dino(load(CONFIG)).eval()


def test_inverse_gives_detrex_names_and_maps_back(mmdet_model):
    state = mmdet_model.state_dict()
    detrex = mmdet_dino_to_detrex(state)
    backbone = [k[len('backbone.'):] for k in state
                if k.startswith('backbone.')]
    assert set(detrex) == detrex_names(backbone)
    # shapes detrex's constructors give: MLP(256, 256, 4, 3) boxes,
    # Linear(256, 80) classes, ref_point_head MLP(512, 256, 256, 2),
    # nn.Embedding(num_classes, 256) labels, tgt_embed one row per query
    shapes = {'bbox_embed.0.layers.0.weight': (256, 256),
              'bbox_embed.6.layers.2.weight': (4, 256),
              'class_embed.6.weight': (80, 256),
              'transformer.decoder.ref_point_head.layers.0.weight':
              (256, 512),
              'label_enc.weight': (80, 256),
              'transformer.tgt_embed.weight': (20, 256),
              'transformer.level_embeds': (4, 256),
              'transformer.encoder.layers.0.ffns.0.layers.0.0.weight':
              (2048, 256),
              'neck.extra_convs.0.conv.weight': (256, 128, 3, 3),
              'neck.convs.2.conv.bias': (256, )}
    assert {k: tuple(detrex[k].shape) for k in shapes} == shapes
    assert is_detrex_dino(detrex) and not is_detrex_dino(state)
    back = detrex_dino_to_mmdet(detrex)
    assert back.keys() == state.keys()
    assert all(back[k] is state[k] for k in state)


def test_detrex_checkpoint_loads_and_predicts_the_same(mmdet_model,
                                                       tmp_path):
    from mmdet.structures import DetDataSample
    detrex = {k: v.clone() for k, v in
              mmdet_dino_to_detrex(mmdet_model.state_dict()).items()}
    # as detrex's DetectionCheckpointer saves it
    path = tmp_path / 'dino_convnext_tiny.pth'
    torch.save({'model': detrex, 'iteration': 90000}, path)
    fresh = tiny_dino(load(CONFIG))
    torch.manual_seed(1)
    for param in fresh.parameters():  # differ from the source everywhere
        param.data.normal_()
    load_checkpoint(fresh, str(path), strict=True)
    fresh.eval()
    image = torch.randint(0, 256, (3, 64, 96), dtype=torch.uint8)
    sample = DetDataSample(metainfo=dict(
        img_shape=(64, 96), ori_shape=(64, 96), scale_factor=(1., 1.)))
    data = dict(inputs=[image], data_samples=[sample])
    with torch.no_grad():
        [want] = mmdet_model.test_step(copy.deepcopy(data))
        [got] = fresh.test_step(copy.deepcopy(data))
    assert torch.equal(want.pred_instances.bboxes, got.pred_instances.bboxes)
    assert torch.equal(want.pred_instances.scores, got.pred_instances.scores)


def test_checkpoint_wrapper_names_are_unwrapped(mmdet_model):
    detrex = mmdet_dino_to_detrex(mmdet_model.state_dict())
    wrapped = {k.replace('encoder.layers.0.',
                         'encoder.layers.0._checkpoint_wrapped_module.'): v
               for k, v in detrex.items()}
    assert wrapped.keys() != detrex.keys()
    assert detrex_dino_to_mmdet(wrapped).keys() == \
        mmdet_model.state_dict().keys()


def test_disagreements_are_refused_with_their_reason(mmdet_model):
    detrex = mmdet_dino_to_detrex(mmdet_model.state_dict())
    post_norm = dict(detrex, **{
        'transformer.encoder.post_norm_layer.weight': torch.ones(256)})
    with pytest.raises(ValueError, match='post_norm: mmdet.s DINO encoder '
                       'has no final LayerNorm'):
        detrex_dino_to_mmdet(post_norm)
    differing = dict(detrex)
    differing['transformer.decoder.class_embed.2.bias'] = torch.zeros(80)
    with pytest.raises(ValueError, match=r"second copy .* differs from "
                       r"'class_embed\.2\.bias'"):
        detrex_dino_to_mmdet(differing)
    unknown = dict(detrex, **{'transformer.pos_trans.weight': torch.ones(1)})
    with pytest.raises(ValueError, match='transformer.pos_trans.weight'):
        detrex_dino_to_mmdet(unknown)
    with pytest.raises(ValueError, match='not mmdet DINO keys'):
        mmdet_dino_to_detrex({'roi_head.x.weight': torch.ones(1)})
