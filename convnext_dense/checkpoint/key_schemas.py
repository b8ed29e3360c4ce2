"""The key schemas of ConvNeXt checkpoints, and the pure functions that map
them onto the official names and back (docs/reference.md §2 and §8).

One table, ``SCHEMAS``, says how each key of the official layout is spelled
by every other ecosystem:

- ``official``: the authors' V1 and V2 files (no mapping);
- ``dinov3``: the DINOv3 authors' ``.pth`` files, official names plus
  ``norms.3``, a second name of the final ``norm`` (their model registers
  that LayerNorm twice);
- ``timm``: timm files, DINOv3's ``convnext_*.dinov3_lvd1689m`` included
  (they are plain timm ConvNeXt files);
- ``mmpretrain``: mmpretrain classifiers and mmdet/mmseg models built on
  mmpretrain's ConvNeXt;
- ``huggingface``: ``ConvNext*`` and ``ConvNextV2*`` of transformers, whole
  classifiers (``convnext.``/``convnextv2.``), bare models and backbones (no
  prefix) and the backbone of ``UperNetForSemanticSegmentation``
  (``backbone.``); ``ConvNextBackbone`` spells our output norms
  ``hidden_states_norms.stage{1..4}``;
- ``huggingface-dinov3``: ``DINOv3ConvNextModel`` and
  ``DINOv3ConvNextBackbone``, as ``save_pretrained`` writes them (no prefix)
  or as their ``state_dict()`` spells them (``model.``).

:func:`to_official` and :func:`from_official` use the table in both
directions; :func:`detect_format` names the schema of a state dict.
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch

# Each row: (official template, foreign template). ``{i}``/``{j}`` are stage
# and block numbers, ``{s}`` the stage number counted from 1 (``i + 1``),
# ``{k}`` the position in a downsampling layer, ``{p}`` weight or bias and
# ``{m}`` the model prefix of the schema. Rows are tried in order, so the
# stem rows shadow the generic downsample row.
SCHEMAS: dict[str, list[tuple[str, str]]] = {
    'official': [],
    'dinov3': [],
    'timm': [
        ('downsample_layers.0.0.{p}', 'stem.0.{p}'),
        ('downsample_layers.0.1.{p}', 'stem.1.{p}'),
        ('downsample_layers.{i}.{k}.{p}', 'stages.{i}.downsample.{k}.{p}'),
        ('stages.{i}.{j}.dwconv.{p}', 'stages.{i}.blocks.{j}.conv_dw.{p}'),
        ('stages.{i}.{j}.norm.{p}', 'stages.{i}.blocks.{j}.norm.{p}'),
        ('stages.{i}.{j}.pwconv1.{p}', 'stages.{i}.blocks.{j}.mlp.fc1.{p}'),
        ('stages.{i}.{j}.pwconv2.{p}', 'stages.{i}.blocks.{j}.mlp.fc2.{p}'),
        ('stages.{i}.{j}.grn.gamma', 'stages.{i}.blocks.{j}.mlp.grn.weight'),
        ('stages.{i}.{j}.grn.beta', 'stages.{i}.blocks.{j}.mlp.grn.bias'),
        ('stages.{i}.{j}.gamma', 'stages.{i}.blocks.{j}.gamma'),
        ('norm.{p}', 'head.norm.{p}'),
        ('head.{p}', 'head.fc.{p}'),
    ],
    'mmpretrain': [
        ('downsample_layers.{i}.{k}.{p}',
         'backbone.downsample_layers.{i}.{k}.{p}'),
        ('stages.{i}.{j}.dwconv.{p}',
         'backbone.stages.{i}.{j}.depthwise_conv.{p}'),
        ('stages.{i}.{j}.norm.{p}', 'backbone.stages.{i}.{j}.norm.{p}'),
        ('stages.{i}.{j}.pwconv1.{p}',
         'backbone.stages.{i}.{j}.pointwise_conv1.{p}'),
        ('stages.{i}.{j}.pwconv2.{p}',
         'backbone.stages.{i}.{j}.pointwise_conv2.{p}'),
        ('stages.{i}.{j}.grn.gamma', 'backbone.stages.{i}.{j}.grn.gamma'),
        ('stages.{i}.{j}.grn.beta', 'backbone.stages.{i}.{j}.grn.beta'),
        ('stages.{i}.{j}.gamma', 'backbone.stages.{i}.{j}.gamma'),
        ('norm{i}.{p}', 'backbone.norm{i}.{p}'),
        ('norm.{p}', 'backbone.norm3.{p}'),
        ('head.{p}', 'head.fc.{p}'),
    ],
    'huggingface': [
        ('downsample_layers.0.0.{p}', '{m}embeddings.patch_embeddings.{p}'),
        ('downsample_layers.0.1.{p}', '{m}embeddings.layernorm.{p}'),
        ('downsample_layers.{i}.{k}.{p}',
         '{m}encoder.stages.{i}.downsampling_layer.{k}.{p}'),
        ('stages.{i}.{j}.dwconv.{p}',
         '{m}encoder.stages.{i}.layers.{j}.dwconv.{p}'),
        ('stages.{i}.{j}.norm.{p}',
         '{m}encoder.stages.{i}.layers.{j}.layernorm.{p}'),
        ('stages.{i}.{j}.pwconv1.{p}',
         '{m}encoder.stages.{i}.layers.{j}.pwconv1.{p}'),
        ('stages.{i}.{j}.pwconv2.{p}',
         '{m}encoder.stages.{i}.layers.{j}.pwconv2.{p}'),
        ('stages.{i}.{j}.grn.gamma',
         '{m}encoder.stages.{i}.layers.{j}.grn.weight'),
        ('stages.{i}.{j}.grn.beta',
         '{m}encoder.stages.{i}.layers.{j}.grn.bias'),
        ('stages.{i}.{j}.gamma',
         '{m}encoder.stages.{i}.layers.{j}.layer_scale_parameter'),
        ('norm{i}.{p}', '{m}hidden_states_norms.stage{s}.{p}'),
        ('norm.{p}', '{m}layernorm.{p}'),
        ('head.{p}', 'classifier.{p}'),
    ],
    # stage 0 holds the stem (conv, then norm) as its downsample_layers, in
    # the official order; stages 1-3 hold norm, then conv, as officially
    'huggingface-dinov3': [
        ('downsample_layers.{i}.{k}.{p}',
         '{m}stages.{i}.downsample_layers.{k}.{p}'),
        ('stages.{i}.{j}.dwconv.{p}',
         '{m}stages.{i}.layers.{j}.depthwise_conv.{p}'),
        ('stages.{i}.{j}.norm.{p}', '{m}stages.{i}.layers.{j}.layer_norm.{p}'),
        ('stages.{i}.{j}.pwconv1.{p}',
         '{m}stages.{i}.layers.{j}.pointwise_conv1.{p}'),
        ('stages.{i}.{j}.pwconv2.{p}',
         '{m}stages.{i}.layers.{j}.pointwise_conv2.{p}'),
        ('stages.{i}.{j}.gamma', '{m}stages.{i}.layers.{j}.gamma'),
        ('norm.{p}', 'layer_norm.{p}'),
    ],
}
FORMATS = tuple(SCHEMAS)
# the model prefixes ``{m}`` a schema accepts, and the one it writes by
# default (the Hub's spelling: what save_pretrained writes)
_PREFIXES = {
    'huggingface': ('convnext.', 'convnextv2.', 'backbone.', ''),
    'huggingface-dinov3': ('', 'model.'),
}
# keys of a schema that repeat another of its keys: (foreign, same as)
_DUPLICATES = {'dinov3': [('norms.3.{p}', 'norm.{p}')]}
# how a GRN parameter is shaped in each schema (official: (1, 1, 1, C))
_GRN_IS_1D = {'official': False, 'dinov3': False, 'timm': True,
              'mmpretrain': True, 'huggingface': False,
              'huggingface-dinov3': False}
_FIELDS = {'i': r'(?P<i>\d+)', 'j': r'(?P<j>\d+)', 's': r'(?P<s>[1-9])',
           'k': r'(?P<k>[01])', 'p': r'(?P<p>weight|bias)'}


def _compile(template: str, fmt: str) -> re.Pattern:
    pattern = re.escape(template)
    fields = dict(_FIELDS, m='(?P<m>{})'.format('|'.join(
        re.escape(prefix) for prefix in _PREFIXES.get(fmt, ('', )))))
    for field, group in fields.items():
        pattern = pattern.replace(re.escape('{' + field + '}'), group, 1)
    return re.compile(pattern + '$')


_COMPILED = {
    fmt: [(_compile(off, 'official'), off, _compile(foreign, fmt), foreign)
          for off, foreign in rows]
    for fmt, rows in SCHEMAS.items()
}
_DUPLICATES_COMPILED = {
    fmt: [(_compile(dup, fmt), dup, same) for dup, same in rows]
    for fmt, rows in _DUPLICATES.items()
}


def _fill(template: str, groups: dict[str, str]) -> str:
    # a 1-based stage number ({s}) and a 0-based one ({i}) fill each other
    if groups.get('s') is not None and groups.get('i') is None:
        groups = dict(groups, i=str(int(groups['s']) - 1))
    elif groups.get('i') is not None:
        groups = dict(groups, s=str(int(groups['i']) + 1))
    return template.format(**groups)


def _reshape_grn(key: str, value: torch.Tensor, to_1d: bool) -> torch.Tensor:
    if key.endswith(('grn.gamma', 'grn.beta', 'grn.weight', 'grn.bias')):
        return value.reshape(-1) if to_1d else value.reshape(1, 1, 1, -1)
    return value


_POINTWISE = re.compile(r'stages\.\d+\.\d+\.pwconv[12]\.weight$')


def _official_shape(name: str, value: torch.Tensor) -> torch.Tensor:
    """Give a mapped tensor the shape the official layout stores.

    GRN parameters become (1, 1, 1, C). Pointwise layers stored as 1x1
    convolutions (timm's ``conv_mlp`` variants such as convnextv2_atto..nano,
    mmpretrain with ``linear_pw_conv=False``) hold (C_out, C_in, 1, 1)
    weights; the official Linear layers hold (C_out, C_in).
    """
    if _POINTWISE.match(name) and value.ndim == 4:
        return value.reshape(value.shape[0], value.shape[1])
    return _reshape_grn(name, value, to_1d=False)


def _check_format(fmt: str) -> None:
    if fmt not in SCHEMAS:
        raise ValueError(f'unknown checkpoint format {fmt!r}; '
                         f'choose one of {FORMATS}')


def detect_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Name the key schema of a flat state dict (no 'backbone.' stripping).

    Raises:
        ValueError: if no schema matches any ConvNeXt key.
    """
    keys = list(state_dict)

    def has(pattern: str) -> bool:
        return any(re.match(pattern, k) for k in keys)

    if has(r'(convnext\.|convnextv2\.|backbone\.)?(embeddings|encoder)\.'
           r'(patch_embeddings|stages)'):
        return 'huggingface'
    if has(r'(model\.)?stages\.\d+\.(layers|downsample_layers)\.'):
        return 'huggingface-dinov3'
    if has(r'stem\.0\.') or has(r'stages\.\d+\.blocks\.'):
        return 'timm'
    if has(r'backbone\.stages\.\d+\.\d+\.depthwise_conv\.'):
        return 'mmpretrain'
    if has(r'stages\.\d+\.\d+\.dwconv\.') and has(r'norms\.3\.'):
        return 'dinov3'
    if has(r'(backbone\.)?stages\.\d+\.\d+\.dwconv\.'):
        return 'official'
    raise ValueError(
        'not a ConvNeXt checkpoint: none of the key schemas '
        f'{", ".join(FORMATS)} matches; first keys: {keys[:5]}')


def detect_prefix(state_dict: Mapping[str, torch.Tensor], fmt: str) -> str:
    """The model prefix (``{m}``) the state dict spells its keys with.

    '' for schemas without one. Lets a conversion back into the source's
    own schema reproduce its exact spelling.
    """
    _check_format(fmt)
    for _, _, foreign_re, foreign in _COMPILED[fmt]:
        if '{m}' not in foreign:
            continue
        for key in state_dict:
            match = foreign_re.match(key)
            if match:
                return match.group('m')
    return ''


def _drop_duplicates(state_dict: Mapping[str, torch.Tensor],
                     fmt: str) -> dict[str, torch.Tensor]:
    """Remove the keys a schema stores twice, once checked equal."""
    out = dict(state_dict)
    for dup_re, _, same in _DUPLICATES_COMPILED.get(fmt, ()):
        for key in [k for k in out if dup_re.match(k)]:
            twin = _fill(same, dup_re.match(key).groupdict())
            if twin in out and not torch.equal(out[key], out[twin]):
                raise ValueError(
                    f'{key!r} and {twin!r} should hold the same tensor in a '
                    f'{fmt} checkpoint, but differ')
            value = out.pop(key)
            out.setdefault(twin, value)
    return out


def to_official(state_dict: Mapping[str, torch.Tensor],
                fmt: str | None = None) -> tuple[dict, list[str]]:
    """Map a state dict of any supported schema onto the official names.

    Official detector/segmentor files (``backbone.`` prefix) are reduced to
    their backbone; a key a schema stores twice (DINOv3's ``norms.3``) is
    checked against its twin and kept once. Pure: the input is not modified.

    Returns:
        The mapped dict and the list of keys that no rule recognised (a
        detector's neck and heads, an optimizer's leftovers, ...).
    """
    fmt = fmt or detect_format(state_dict)
    _check_format(fmt)
    state_dict = _drop_duplicates(state_dict, fmt)
    out, unknown = {}, []
    backbone_prefixed = any(k.startswith('backbone.') for k in state_dict)
    for key, value in state_dict.items():
        if fmt in ('official', 'dinov3'):
            is_backbone = key.startswith('backbone.')
            name = key[len('backbone.'):] if is_backbone else key
            if is_backbone or not backbone_prefixed:
                out[name] = value
            else:
                unknown.append(key)
            continue
        for _, off, foreign_re, _ in _COMPILED[fmt]:
            match = foreign_re.match(key)
            if match:
                name = _fill(off, match.groupdict())
                out[name] = _official_shape(name, value)
                break
        else:
            unknown.append(key)
    if (fmt == 'mmpretrain' and 'head.weight' in out
            and 'norm0.weight' not in out):
        # a classifier: its backbone.norm3 is the final norm before the head
        # (renamed in place, so the key order survives a round trip)
        out = {('norm.' + k[len('norm3.'):] if k.startswith('norm3.') else k):
               v for k, v in out.items()}
    return out, unknown


def from_official(state_dict: Mapping[str, torch.Tensor], fmt: str,
                  v2: bool = False, prefix: str | None = None) -> dict:
    """Write an official-layout state dict in another schema.

    The inverse of :func:`to_official` for backbone and classifier keys.

    Args:
        state_dict: Official names.
        fmt: Target schema, one of ``FORMATS``.
        v2: Hugging Face only: write ConvNeXt-V2 classifier keys
            (``convnextv2.``) instead of V1 ones (``convnext.``). Defaults
            to False.
        prefix: The model prefix ``{m}`` to write, one of those the schema
            accepts (e.g. ``'backbone.'`` for the backbone of a Hugging Face
            UperNet, ``'model.'`` for a DINOv3 ``state_dict()``); None
            writes the default. Defaults to None.

    Raises:
        KeyError: if a key has no spelling in the target schema.
        ValueError: if two keys would get the same spelling (mmpretrain
            stores a classifier's ``norm`` and a dense model's ``norm3``
            under one name), or the prefix is not one the schema has.
    """
    _check_format(fmt)
    if fmt == 'huggingface' and prefix is None:
        prefix = 'convnextv2.' if v2 else 'convnext.'
    prefix = prefix or ''
    if prefix not in _PREFIXES.get(fmt, ('', )):
        raise ValueError(f'{prefix!r} is not a model prefix of the {fmt} '
                         f'schema; choose one of {_PREFIXES.get(fmt, ("",))}')
    if fmt in ('official', 'dinov3'):
        out = dict(state_dict)
        for _, dup, same in _DUPLICATES_COMPILED.get(fmt, ()):
            for p in ('weight', 'bias'):
                if same.format(p=p) in out:
                    out[dup.format(p=p)] = out[same.format(p=p)]
        return out
    out, source = {}, {}
    for key, value in state_dict.items():
        for off_re, _, _, foreign in _COMPILED[fmt]:
            match = off_re.match(key)
            if match:
                name = _fill(foreign, dict(match.groupdict(), m=prefix))
                if name in out:
                    raise ValueError(
                        f'{source[name]!r} and {key!r} would both be '
                        f'written as {name!r} in the {fmt} schema')
                out[name] = _reshape_grn(key, value, to_1d=_GRN_IS_1D[fmt])
                source[name] = key
                break
        else:
            raise KeyError(f'{key!r} has no {fmt} spelling')
    return out
