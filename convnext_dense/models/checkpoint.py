"""Reading ConvNeXt checkpoints of every common schema, safely.

One table, ``SCHEMAS``, says how each key of the official layout is spelled
by timm, mmpretrain and Hugging Face. Two pure functions use it in both
directions (:func:`to_official`, :func:`from_official`), and
:func:`load_backbone_checkpoint` detects the format of a file, maps it, and
refuses to leave a backbone silently random.

Files are read with ``torch.load(weights_only=True)`` (or safetensors): a
checkpoint can never run code.
"""
from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Mapping

import torch
from mmengine.logging import print_log

from .checkpoint_io import URL_PREFIXES, ZOO_PREFIXES, load_checkpoint_file

# Each row: (official template, foreign template). ``{i}``/``{j}`` are stage
# and block numbers, ``{p}`` a parameter name (weight or bias). Rows are
# tried in order, so the stem row shadows the generic downsample row.
_P = '{p}'
SCHEMAS: dict[str, list[tuple[str, str]]] = {
    'official': [],
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
        ('stages.{i}.{j}.dwconv.{p}', 'backbone.stages.{i}.{j}.depthwise_conv.{p}'),
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
        ('downsample_layers.0.0.{p}', '{m}.embeddings.patch_embeddings.{p}'),
        ('downsample_layers.0.1.{p}', '{m}.embeddings.layernorm.{p}'),
        ('downsample_layers.{i}.{k}.{p}',
         '{m}.encoder.stages.{i}.downsampling_layer.{k}.{p}'),
        ('stages.{i}.{j}.dwconv.{p}', '{m}.encoder.stages.{i}.layers.{j}.dwconv.{p}'),
        ('stages.{i}.{j}.norm.{p}',
         '{m}.encoder.stages.{i}.layers.{j}.layernorm.{p}'),
        ('stages.{i}.{j}.pwconv1.{p}',
         '{m}.encoder.stages.{i}.layers.{j}.pwconv1.{p}'),
        ('stages.{i}.{j}.pwconv2.{p}',
         '{m}.encoder.stages.{i}.layers.{j}.pwconv2.{p}'),
        ('stages.{i}.{j}.grn.gamma',
         '{m}.encoder.stages.{i}.layers.{j}.grn.weight'),
        ('stages.{i}.{j}.grn.beta', '{m}.encoder.stages.{i}.layers.{j}.grn.bias'),
        ('stages.{i}.{j}.gamma',
         '{m}.encoder.stages.{i}.layers.{j}.layer_scale_parameter'),
        ('norm.{p}', '{m}.layernorm.{p}'),
        ('head.{p}', 'classifier.{p}'),
    ],
}
FORMATS = tuple(SCHEMAS)
# how a GRN parameter is shaped in each schema (official: (1, 1, 1, C))
_GRN_IS_1D = {'official': False, 'timm': True, 'mmpretrain': True,
              'huggingface': False}
_FIELDS = {'i': r'(?P<i>\d+)', 'j': r'(?P<j>\d+)', 'k': r'(?P<k>[01])',
           'p': r'(?P<p>weight|bias)', 'm': r'(?P<m>convnext|convnextv2)'}


def _compile(template: str) -> re.Pattern:
    pattern = re.escape(template)
    for field, group in _FIELDS.items():
        pattern = pattern.replace(re.escape('{' + field + '}'), group, 1)
    return re.compile(pattern + '$')


_COMPILED = {
    fmt: [(_compile(off), off, _compile(foreign), foreign)
          for off, foreign in rows]
    for fmt, rows in SCHEMAS.items()
}


def _fill(template: str, groups: dict[str, str]) -> str:
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


def detect_format(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Name the key schema of a flat state dict (no 'backbone.' stripping).

    Raises:
        ValueError: if no schema matches any ConvNeXt key.
    """
    keys = list(state_dict)
    def has(pattern: str) -> bool:
        return any(re.match(pattern, k) for k in keys)

    if has(r'(convnext|convnextv2)\.embeddings\.'):
        return 'huggingface'
    if has(r'stem\.0\.') or has(r'stages\.\d+\.blocks\.'):
        return 'timm'
    if has(r'backbone\.stages\.\d+\.\d+\.depthwise_conv\.'):
        return 'mmpretrain'
    if has(r'(backbone\.)?stages\.\d+\.\d+\.dwconv\.'):
        return 'official'
    raise ValueError(
        'not a ConvNeXt checkpoint: none of the official, timm, mmpretrain or '
        f'Hugging Face key schemas matches; first keys: {keys[:5]}')


def to_official(state_dict: Mapping[str, torch.Tensor],
                fmt: str | None = None) -> tuple[dict, list[str]]:
    """Map a state dict of any supported schema onto the official names.

    Official detector/segmentor files (``backbone.`` prefix) are reduced to
    their backbone. Pure: the input is not modified.

    Returns:
        The mapped dict and the list of keys that no rule recognised (a
        detector's neck and heads, an optimizer's leftovers, ...).
    """
    fmt = fmt or detect_format(state_dict)
    if fmt not in SCHEMAS:
        raise ValueError(f'unknown checkpoint format {fmt!r}; '
                         f'choose one of {FORMATS}')
    out, unknown = {}, []
    for key, value in state_dict.items():
        if fmt == 'official':
            is_backbone = key.startswith('backbone.')
            name = key[len('backbone.'):] if is_backbone else key
            if is_backbone or not any(
                    k.startswith('backbone.') for k in state_dict):
                out[name] = value
            else:
                unknown.append(key)
            continue
        for off_re, off, foreign_re, _ in _COMPILED[fmt]:
            match = foreign_re.match(key)
            if match:
                groups = {k: v for k, v in match.groupdict().items()
                          if k != 'm'}
                name = _fill(off, groups)
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
                  v2: bool = False) -> dict:
    """Write an official-layout state dict in another schema.

    The inverse of :func:`to_official` for backbone and classifier keys;
    ``v2`` picks the Hugging Face model prefix (``convnextv2``).

    Raises:
        KeyError: if a key has no spelling in the target schema.
        ValueError: if two keys would get the same spelling (mmpretrain
            stores a classifier's ``norm`` and a dense model's ``norm3``
            under one name).
    """
    if fmt not in SCHEMAS:
        raise ValueError(f'unknown checkpoint format {fmt!r}; '
                         f'choose one of {FORMATS}')
    if fmt == 'official':
        return dict(state_dict)
    out, source = {}, {}
    for key, value in state_dict.items():
        for off_re, _, _, foreign in _COMPILED[fmt]:
            match = off_re.match(key)
            if match:
                groups = dict(match.groupdict(),
                              m='convnextv2' if v2 else 'convnext')
                name = _fill(foreign, groups)
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


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint without ever executing code from it.

    A local path, a URL or a model-zoo name, read by
    :func:`convnext_dense.models.checkpoint_io.load_checkpoint_file`
    (safetensors, or ``torch.load(weights_only=True)``; URLs are downloaded
    into the cache first). The wrapping keys ``model`` (official
    ImageNet files) and ``state_dict`` (mmengine/mmdet/mmseg files) are
    unwrapped.

    Raises:
        FileNotFoundError: if the path does not exist.
        ValueError: if the file is corrupt, truncated, holds something other
            than tensors, or would need code execution to load.
    """
    path = os.fspath(path)
    if not path.startswith(URL_PREFIXES + ZOO_PREFIXES) and not os.path.isfile(
            os.path.expanduser(path)):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        obj = load_checkpoint_file(path, map_location='cpu')
    except Exception as err:  # pickle, zip and safetensors errors alike
        raise ValueError(
            f'cannot read checkpoint {path}: it is corrupt, truncated, or '
            'holds objects that a weights-only load refuses (a pickle that '
            f'would run code is refused here). Cause: {type(err).__name__}: '
            f'{str(err).splitlines()[0] if str(err) else ""}') from err
    for wrapper in ('state_dict', 'model'):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping) or not all(
            isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f'{path} does not hold a state dict of tensors')
    return dict(obj)


def compare_state_dicts(expected: Mapping[str, torch.Tensor],
                        found: Mapping[str, object]
                        ) -> tuple[list[str], list[str], list[str]]:
    """How a state dict ``found`` differs from the ``expected`` one.

    Returns:
        ``(missing, unexpected, mis_shaped)``: keys of ``expected`` absent
        from ``found``; keys of ``found`` absent from ``expected``; keys in
        both whose tensors differ in shape (values of ``found`` without a
        shape are not compared). Each list keeps its dict's key order.
    """
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    mis_shaped = [
        key for key in expected
        if key in found and hasattr(found[key], 'shape')
        and found[key].shape != expected[key].shape
    ]
    return missing, unexpected, mis_shaped


def load_backbone_checkpoint(model: torch.nn.Module,
                             path: str | os.PathLike,
                             prefix: str | None = None,
                             allow_partial: bool = False) -> dict:
    """Load a checkpoint of any supported format into a ConvNeXt backbone.

    The layers that only dense prediction has (``norm{i}``) may be missing
    (ImageNet files lack them); every other backbone parameter must be
    found with its exact shape, or this raises, naming the keys.

    Args:
        model: The :class:`ConvNeXt` to fill.
        path: Checkpoint file (``.pth``/``.pt``/``.bin``/``.safetensors``).
        prefix: Optional key prefix to select first (e.g. ``'backbone.'``);
            detected automatically when None.
        allow_partial: Accept missing backbone keys (they stay as
            initialised) and only warn. Shape mismatches always raise.

    Returns:
        A report: format, loaded/missing/unexpected/ignored key lists.
    """
    raw = read_checkpoint(path)
    if prefix:
        raw = {k[len(prefix):]: v for k, v in raw.items()
               if k.startswith(prefix)}
        if not raw:
            raise ValueError(f'no key of {path} starts with {prefix!r}')
    try:
        fmt = detect_format(raw)
    except ValueError as err:
        raise ValueError(f'{path}: {err}') from None
    mapped, ignored = to_official(raw, fmt)

    own = model.state_dict()
    mismatched = [
        f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
        for k, v in mapped.items() if k in own and v.shape != own[k].shape
    ]
    if mismatched:
        raise ValueError(
            f'{path} ({fmt}) does not fit this ConvNeXt (another arch?); '
            f'{len(mismatched)} shape mismatches, e.g. '
            + '; '.join(mismatched[:5]))
    dense_only = re.compile(r'norm\d\.')
    missing = [k for k in own if k not in mapped]
    required_missing = [k for k in missing if not dense_only.match(k)]
    # the classifier's final norm and head are expected in ImageNet files
    unexpected = [k for k in mapped if k not in own
                  and not re.match(r'(norm|head)\.', k)]
    loaded = [k for k in mapped if k in own]
    if not loaded:
        raise ValueError(f'{path} ({fmt}) shares no key with this ConvNeXt')
    if required_missing and not allow_partial:
        raise ValueError(
            f'{path} ({fmt}) would leave {len(required_missing)} of '
            f'{len(own)} backbone tensors random, e.g. '
            f'{required_missing[:5]}; pass allow_partial=True to accept')
    if unexpected and not allow_partial:
        raise ValueError(
            f'{path} ({fmt}) has {len(unexpected)} backbone keys this '
            f'ConvNeXt lacks (another arch?), e.g. {unexpected[:5]}')
    model.load_state_dict({k: mapped[k] for k in loaded}, strict=False)
    report = dict(format=fmt, loaded=loaded, missing=missing,
                  unexpected=unexpected, ignored=ignored)
    print_log(
        f'loaded {len(loaded)}/{len(own)} backbone tensors from {path} '
        f'({fmt}); missing {missing[:8]}{"..." if len(missing) > 8 else ""}; '
        f'{len(ignored)} non-backbone keys ignored',
        logger='current',
        level=logging.WARNING if required_missing else logging.INFO)
    return report


# how each ecosystem stores a state dict on disk: under this key, or flat
_WRAPPER_KEY = {'official': 'model', 'timm': None, 'mmpretrain': 'state_dict',
                'huggingface': None}


def _save_atomically(state_dict: dict, dst: str, wrapper: str | None) -> None:
    """Write to a hidden file next to ``dst``, then rename it over ``dst``.

    A crash or a full disk leaves ``dst`` untouched instead of truncated.
    ``.safetensors`` files are always flat (the format has no nesting).
    """
    directory, base = os.path.split(os.path.abspath(dst))
    tmp = os.path.join(directory, f'.{base}.{uuid.uuid4().hex}.tmp')
    try:
        # 'xb': never clobber; the umask sets the permissions as for dst
        with open(tmp, 'xb') as file:
            if dst.endswith('.safetensors'):
                from safetensors.torch import save
                file.write(save({k: v.contiguous()
                                 for k, v in state_dict.items()}))
            else:
                torch.save({wrapper: state_dict} if wrapper else state_dict,
                           file)
        os.replace(tmp, dst)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def convert_checkpoint(src: str | os.PathLike,
                       dst: str | os.PathLike,
                       fmt: str = 'official',
                       v2: bool | None = None,
                       force: bool = False) -> dict:
    """Rewrite a ConvNeXt checkpoint of any supported schema as ``fmt``.

    Only the backbone (and a classifier's final norm and head) is kept: a
    detector's neck and heads are dropped and counted in the summary. The
    output is wrapped as its ecosystem expects: ``{'model': sd}`` for the
    official layout, ``{'state_dict': sd}`` for mmpretrain, flat for timm
    and Hugging Face; a ``.safetensors`` destination is always flat.

    Args:
        src: Checkpoint to read (any format :func:`read_checkpoint` reads).
        dst: File to write, atomically.
        fmt: Target schema, one of ``FORMATS``. Defaults to 'official'.
        v2: Use the ConvNeXt-V2 Hugging Face prefix (``convnextv2``); None
            infers it from the presence of GRN weights. Defaults to None.
        force: Overwrite an existing ``dst``. Defaults to False.

    Returns:
        A summary: src, dst, source and target format, tensors written,
        and the keys dropped.

    Raises:
        FileExistsError: if ``dst`` exists and ``force`` is False.
        ValueError: if ``src`` is unreadable or not ConvNeXt, or holds keys
            the target schema cannot spell (``norm{i}`` of a dense model has
            no timm or Hugging Face name).
    """
    if fmt not in SCHEMAS:
        raise ValueError(f'unknown checkpoint format {fmt!r}; '
                         f'choose one of {FORMATS}')
    src, dst = os.fspath(src), os.fspath(dst)
    if os.path.exists(dst) and not force:
        raise FileExistsError(
            f'{dst} exists; pass force=True (--force) to overwrite it')
    raw = read_checkpoint(src)
    try:
        src_fmt = detect_format(raw)
    except ValueError as err:
        raise ValueError(f'{src}: {err}') from None
    official, dropped = to_official(raw, src_fmt)
    if v2 is None:
        v2 = any('.grn.' in key for key in official)
    try:
        converted = from_official(official, fmt, v2=v2)
    except KeyError as err:
        raise ValueError(
            f'{src} ({src_fmt}) cannot be written as {fmt}: {err.args[0]} '
            '(convert to official or mmpretrain to keep it)') from None
    _save_atomically(converted, dst, _WRAPPER_KEY[fmt])
    return dict(src=src, dst=dst, source_format=src_fmt, format=fmt,
                tensors=len(converted), dropped=dropped)
