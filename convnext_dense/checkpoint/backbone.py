"""Reading ConvNeXt checkpoints of every common schema, safely.

The key schemas and the pure functions that map them live in
:mod:`convnext_dense.checkpoint.key_schemas` (re-exported here);
:func:`load_backbone_checkpoint` reads a file, detects its format, maps it,
and refuses to leave a backbone silently random; :func:`convert_checkpoint`
rewrites a file in another schema.

Files are read with ``torch.load(weights_only=True)`` (or safetensors): a
checkpoint can never run code.
"""
from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping

import torch
from mmengine.logging import print_log

from convnext_dense.fileio import atomic_open, check_outputs

from .download import URL_PREFIXES, ZOO_PREFIXES, load_checkpoint_file
from .key_schemas import (FORMATS, SCHEMAS, detect_format, detect_prefix,
                          from_official, to_official)
from .reader import CheckpointError

__all__ = [
    'FORMATS', 'SCHEMAS', 'convert_checkpoint',
    'detect_format', 'detect_prefix', 'from_official',
    'load_backbone_checkpoint', 'read_checkpoint', 'to_official'
]

def read_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint without ever executing code from it.

    A local path, a URL or a model-zoo name, read by
    :func:`convnext_dense.checkpoint.download.load_checkpoint_file`
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
    except CheckpointError:
        raise  # the reader's message names the file and the problem
    except Exception as err:  # e.g. a download that failed
        raise CheckpointError(
            f'cannot read checkpoint {path}: {type(err).__name__}: '
            f'{str(err).splitlines()[0] if str(err) else ""}') from err
    for wrapper in ('state_dict', 'model'):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
            break
    if not isinstance(obj, Mapping) or not all(
            isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f'{path} does not hold a state dict of tensors')
    return dict(obj)


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
            raise CheckpointError(f'no key of {path} starts with {prefix!r}')
    try:
        fmt = detect_format(raw)
    except ValueError as err:
        raise CheckpointError(f'{path}: {err}') from None
    mapped, ignored = to_official(raw, fmt)

    own = model.state_dict()
    mismatched = [
        f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}'
        for k, v in mapped.items() if k in own and v.shape != own[k].shape
    ]
    if mismatched:
        raise CheckpointError(
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
        raise CheckpointError(
            f'{path} ({fmt}) shares no key with this ConvNeXt')
    if required_missing and not allow_partial:
        raise CheckpointError(
            f'{path} ({fmt}) would leave {len(required_missing)} of '
            f'{len(own)} backbone tensors random, e.g. '
            f'{required_missing[:5]}; pass allow_partial=True to accept')
    if unexpected and not allow_partial:
        raise CheckpointError(
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
# (the DINOv3 authors' files and Hugging Face files are flat)
_WRAPPER_KEY = {'official': 'model', 'dinov3': None, 'timm': None,
                'mmpretrain': 'state_dict', 'huggingface': None,
                'huggingface-dinov3': None}


def _save_atomically(state_dict: dict, dst: str, wrapper: str | None) -> None:
    """Write ``dst`` whole or not at all (:func:`~convnext_dense.fileio.
    atomic_open`): a crash or a full disk leaves it untouched instead of
    truncated. ``.safetensors`` files are always flat (the format has no
    nesting).
    """
    with atomic_open(dst) as file:
        if dst.endswith('.safetensors'):
            from safetensors.torch import save
            file.write(save({k: v.contiguous()
                             for k, v in state_dict.items()}))
        else:
            torch.save({wrapper: state_dict} if wrapper else state_dict,
                       file)


def convert_checkpoint(src: str | os.PathLike,
                       dst: str | os.PathLike,
                       fmt: str = 'official',
                       v2: bool | None = None,
                       force: bool = False,
                       prefix: str | None = None) -> dict:
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
        prefix: The model prefix of the target schema (see
            :func:`~convnext_dense.checkpoint.key_schemas.from_official`); None
            keeps the source's own when source and target schema are the
            same, and writes the schema's default otherwise. Defaults to
            None.

    Returns:
        A summary: src, dst, source and target format, tensors written,
        and the keys dropped.

    Raises:
        FileExistsError: if ``dst`` exists and ``force`` is False.
        OutputOverwritesInputError: if ``dst`` is ``src`` (links resolved),
            even with ``force``.
        ValueError: if ``src`` is unreadable or not ConvNeXt, or holds keys
            the target schema cannot spell (``norm{i}`` of a dense model has
            no timm name), or a prefix the target schema does not have.
    """
    if fmt not in SCHEMAS:
        raise ValueError(f'unknown checkpoint format {fmt!r}; '
                         f'choose one of {FORMATS}')
    src, dst = os.fspath(src), os.fspath(dst)
    check_outputs([('DST', dst)], [('the source', src)], why='converting '
                  'in place would lose the source; write to another file')
    if os.path.exists(dst) and not force:
        raise FileExistsError(
            f'{dst} exists; pass force=True (--force) to overwrite it')
    raw = read_checkpoint(src)
    try:
        src_fmt = detect_format(raw)
    except ValueError as err:
        raise CheckpointError(f'{src}: {err}') from None
    official, dropped = to_official(raw, src_fmt)
    if v2 is None:
        v2 = any('.grn.' in key for key in official)
    if prefix is None and fmt == src_fmt:
        prefix = detect_prefix(raw, src_fmt)  # the source's own spelling
    try:
        converted = from_official(official, fmt, v2=v2, prefix=prefix)
    except KeyError as err:
        raise CheckpointError(
            f'{src} ({src_fmt}) cannot be written as {fmt}: {err.args[0]} '
            '(convert to official or mmpretrain to keep it)') from None
    for key, tensor in converted.items():
        # a view repeating its storage (stride 0) is written element by
        # element: 1e12 elements from 4 bytes would fill the disk
        if tensor.numel() * tensor.element_size() > \
                tensor.untyped_storage().nbytes():
            raise CheckpointError(
                f'{src}: {key} is a {tuple(tensor.shape)} view of '
                f'{tensor.untyped_storage().nbytes()} bytes; writing it '
                f'would take {tensor.numel() * tensor.element_size()}')
    _save_atomically(converted, dst, _WRAPPER_KEY[fmt])
    return dict(src=src, dst=dst, source_format=src_fmt, format=fmt,
                tensors=len(converted), dropped=dropped)
