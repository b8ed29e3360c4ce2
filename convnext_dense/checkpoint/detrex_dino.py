"""Trained DINO detectors: detrex's (Detectron2) names <-> mmdet 3.x's.

detrex's DINO (``projects/dino/modeling/dino.py``, ``dino_transformer.py``,
with ``detrex/layers`` and ``detrex/modeling/neck/channel_mapper.py``) and
mmdet's (``mmdet/models/detectors/dino.py``, ``layers/transformer/
dino_layers.py``, ``dense_heads/dino_head.py``) hold the same tensors under
other names: the backbone keeps the official ConvNeXt names in both;
detrex's ``transformer.*`` is split in mmdet into the detector's
``encoder``/``decoder``/``memory_trans_*``/``level_embed``/
``query_embedding``; ``attentions.0/1`` are ``self_attn``/``cross_attn``,
``ffns.0`` is ``ffn``; the prediction heads ``class_embed.k`` and
``bbox_embed.k`` (3-layer MLPs) are ``bbox_head.cls_branches.k`` and
``bbox_head.reg_branches.k`` (Linear-ReLU-Linear-ReLU-Linear, so MLP layer
m is Sequential index 2m); ``label_enc`` is the denoising generator's
``label_embedding``. Index k = 6 (the decoder's layer count) is the
encoder's proposal head in both.

Where the two do not agree, keys are refused with the reason:

- ``transformer.decoder.class_embed.*`` / ``.bbox_embed.*``: detrex
  registers the heads a second time under the decoder; a copy that differs
  from ``class_embed.*`` / ``bbox_embed.*`` is refused, an equal one
  dropped (mmdet passes the heads to the decoder at call time).
- ``transformer.encoder.post_norm_layer.*`` (detrex's ``post_norm=True``):
  mmdet's DINO encoder has no final LayerNorm.

Not key-level, and set in the configs instead: detrex's ChannelMapper convs
have biases (``bias=True``) and its sine position embedding uses
temperature 10000 and offset -0.5 (configs/_base_/dino_convnext_4scale.py).
``learnt_init_query=False`` models have no ``tgt_embed``: mmdet's
``query_embedding`` is then reported missing by the strict load. Wrapped
layers of ``use_checkpoint=True`` runs (``_checkpoint_wrapped_module``, no
parameters of its own) are unwrapped.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch

# (mmdet template, detrex template); {i} a number, {p} weight or bias,
# {r} the rest of the key (identical names inside attention / FFN modules)
TABLE: tuple[tuple[str, str], ...] = (
    ('backbone.{r}', 'backbone.{r}'),
    ('neck.convs.{i}.conv.{p}', 'neck.convs.{i}.conv.{p}'),
    ('neck.convs.{i}.gn.{p}', 'neck.convs.{i}.norm.{p}'),
    ('neck.extra_convs.{i}.conv.{p}', 'neck.extra_convs.{i}.conv.{p}'),
    ('neck.extra_convs.{i}.gn.{p}', 'neck.extra_convs.{i}.norm.{p}'),
    ('level_embed', 'transformer.level_embeds'),
    ('query_embedding.weight', 'transformer.tgt_embed.weight'),
    ('memory_trans_fc.{p}', 'transformer.enc_output.{p}'),
    ('memory_trans_norm.{p}', 'transformer.enc_output_norm.{p}'),
    ('encoder.layers.{i}.self_attn.{r}',
     'transformer.encoder.layers.{i}.attentions.0.{r}'),
    ('decoder.layers.{i}.self_attn.{r}',
     'transformer.decoder.layers.{i}.attentions.0.{r}'),
    ('decoder.layers.{i}.cross_attn.{r}',
     'transformer.decoder.layers.{i}.attentions.1.{r}'),
    ('encoder.layers.{i}.ffn.{r}',
     'transformer.encoder.layers.{i}.ffns.0.{r}'),
    ('decoder.layers.{i}.ffn.{r}',
     'transformer.decoder.layers.{i}.ffns.0.{r}'),
    ('encoder.layers.{i}.norms.{r}',
     'transformer.encoder.layers.{i}.norms.{r}'),
    ('decoder.layers.{i}.norms.{r}',
     'transformer.decoder.layers.{i}.norms.{r}'),
    ('decoder.ref_point_head.{r}', 'transformer.decoder.ref_point_head.{r}'),
    ('decoder.norm.{p}', 'transformer.decoder.norm.{p}'),
    ('bbox_head.cls_branches.{i}.{p}', 'class_embed.{i}.{p}'),
    ('bbox_head.reg_branches.{i}.0.{p}', 'bbox_embed.{i}.layers.0.{p}'),
    ('bbox_head.reg_branches.{i}.2.{p}', 'bbox_embed.{i}.layers.1.{p}'),
    ('bbox_head.reg_branches.{i}.4.{p}', 'bbox_embed.{i}.layers.2.{p}'),
    ('dn_query_generator.label_embedding.weight', 'label_enc.weight'),
)
# detrex's second registration of the heads: (prefix, primary prefix)
DUPLICATES = (('transformer.decoder.class_embed.', 'class_embed.'),
              ('transformer.decoder.bbox_embed.', 'bbox_embed.'))
# detrex keys mmdet's DINO has no place for: prefix -> reason
REFUSED = {
    'transformer.encoder.post_norm_layer.':
    "detrex's encoder post_norm: mmdet's DINO encoder has no final "
    'LayerNorm',
}
_WRAPPER = '._checkpoint_wrapped_module'
_FIELDS = {'i': r'(?P<i>\d+)', 'p': r'(?P<p>weight|bias)',
           'r': r'(?P<r>[\w.]+)'}


def _compile(template: str) -> re.Pattern:
    pattern = re.escape(template)
    for name, group in _FIELDS.items():
        pattern = pattern.replace(re.escape('{%s}' % name), group)
    return re.compile(pattern + '$')


_TO_MMDET = [(_compile(detrex), mmdet) for mmdet, detrex in TABLE]
_TO_DETREX = [(_compile(mmdet), detrex) for mmdet, detrex in TABLE]


def _rename(key: str, rows: list[tuple[re.Pattern, str]]) -> str | None:
    for pattern, template in rows:
        match = pattern.match(key)
        if match:
            return template.format(**match.groupdict())
    return None


def is_detrex_dino(state_dict: Mapping[str, object]) -> bool:
    """Whether a flat state dict is a detrex DINO detector."""
    return ('transformer.tgt_embed.weight' in state_dict
            or 'transformer.level_embeds' in state_dict) and \
        'label_enc.weight' in state_dict


def detrex_dino_to_mmdet(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """A detrex DINO state dict (``checkpoint['model']``) in mmdet's DINO
    names. Pure; tensors are not copied.

    Raises:
        ValueError: naming the keys and the reason, if a key has no mmdet
            counterpart (:data:`REFUSED`, or a name this table does not
            know) or a duplicated head differs from its primary.
    """
    flat = {key.replace(_WRAPPER, ''): value
            for key, value in state_dict.items()}
    out, unknown = {}, []
    for key, value in flat.items():
        duplicate = next((primary for prefix, primary in DUPLICATES
                          if key.startswith(prefix)), None)
        if duplicate is not None:
            primary = duplicate + key.split('.', 3)[-1]
            if primary not in flat or not torch.equal(flat[primary], value):
                raise ValueError(
                    f'detrex DINO key {key!r} is a second copy of the '
                    f'prediction heads but differs from {primary!r}; mmdet '
                    'holds one copy')
            continue
        reason = next((why for prefix, why in REFUSED.items()
                       if key.startswith(prefix)), None)
        if reason is not None:
            raise ValueError(f'detrex DINO key {key!r} refused: {reason}')
        name = _rename(key, _TO_MMDET)
        if name is None:
            unknown.append(key)
        else:
            out[name] = value
    if unknown:
        raise ValueError(f'{len(unknown)} detrex DINO keys have no mmdet '
                         f'DINO counterpart: {unknown[:5]}')
    return out


def mmdet_dino_to_detrex(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """The inverse of :func:`detrex_dino_to_mmdet`: an mmdet DINO state dict
    in detrex's names, the heads registered twice as detrex saves them.

    Raises:
        ValueError: if a key is not one of mmdet's DINO.
    """
    out, unknown = {}, []
    for key, value in state_dict.items():
        name = _rename(key, _TO_DETREX)
        if name is None:
            unknown.append(key)
            continue
        out[name] = value
        for prefix, primary in DUPLICATES:
            if name.startswith(primary):
                out[prefix + name[len(primary):]] = value
    if unknown:
        raise ValueError(f'{len(unknown)} keys are not mmdet DINO keys: '
                         f'{unknown[:5]}')
    return out
