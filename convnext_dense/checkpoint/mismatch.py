"""Does a checkpoint fit the model a config builds? One comparison, one
report, for every place that loads whole-model weights.

mmengine's ``Runner.load_checkpoint`` loads with ``strict=False``: missing
and unexpected tensors are logged as warnings and mis-shaped ones skipped,
so a checkpoint of another model is evaluated with random weights (a
segmentation checkpoint on a detection config gave bbox_mAP 0.000 and exit
status 0). :func:`describe_mismatch` names what differs;

- ``tools/infer.py`` (:func:`convnext_dense.apis.load_checkpoint_strict`),
- ``tools/test.py`` (:class:`convnext_dense.engine.StrictLoadHook`) and
- ``--resume`` (:class:`convnext_dense.engine.AtomicCheckpointHook`)

all report it in these words.
"""
from __future__ import annotations

from typing import Mapping, Optional

import torch
import torch.nn as nn

from .reader import CheckpointError

# keys named per kind of difference
SHOWN_KEYS = 5


class CheckpointMismatchError(CheckpointError, RuntimeError):
    """The checkpoint's tensors do not fit the model the config builds."""


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


def state_dict_of(checkpoint: Mapping) -> dict:
    """The model weights of a loaded checkpoint file: its ``state_dict`` or
    ``model`` entry, else the file itself; a ``module.`` prefix (of
    DataParallel / DistributedDataParallel) is stripped, as mmengine does."""
    state = checkpoint
    for key in ('state_dict', 'model'):
        if isinstance(checkpoint.get(key), Mapping):
            state = checkpoint[key]
            break
    return {
        (k[len('module.'):] if k.startswith('module.') else k): v
        for k, v in state.items()
    }


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model whose keys a checkpoint holds: inside DDP-style wrappers and
    test-time-augmentation models (which mmengine loads into the same
    way)."""
    from mmengine.model import BaseTTAModel, is_model_wrapper
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


def describe_mismatch(expected: Mapping, found: Mapping) -> Optional[str]:
    """What differs between a model's state dict and a checkpoint's.

    Returns:
        None if every key is in both with the same shape; else the counts
        and the first few keys of each kind of difference, e.g. ``'(416
        tensors in the file, 430 in the model): 30 tensors missing in the
        file: ...; ... | 16 tensors not in the model: ... | 1 tensor with
        another shape: w: file (4, 64) vs model (3, 64)'``.
    """
    missing, unexpected, mis_shaped = compare_state_dicts(expected, found)
    mis_shaped = [
        f'{key}: file {tuple(found[key].shape)} vs model '
        f'{tuple(expected[key].shape)}' for key in mis_shaped
    ]
    if not (missing or unexpected or mis_shaped):
        return None
    parts = []
    for label, keys in (('missing in the file', missing),
                        ('not in the model', unexpected),
                        ('with another shape', mis_shaped)):
        if keys:
            shown = '; '.join(keys[:SHOWN_KEYS])
            more = (f' (+{len(keys) - SHOWN_KEYS} more)'
                    if len(keys) > SHOWN_KEYS else '')
            parts.append(f'{len(keys)} tensors {label}: {shown}{more}')
    return (f'({len(found)} tensors in the file, {len(expected)} in the '
            'model): ' + ' | '.join(parts))


def check_checkpoint_fits(model: nn.Module, checkpoint: Mapping,
                          filename: str, hint: str = '') -> None:
    """Raise if ``checkpoint`` (as read from ``filename``) does not fit
    ``model``.

    Raises:
        CheckpointMismatchError: Naming the file and every kind of
            difference (:func:`describe_mismatch`), then ``hint``.
    """
    report = describe_mismatch(unwrap_model(model).state_dict(),
                               state_dict_of(checkpoint))
    if report:
        raise CheckpointMismatchError(
            f'checkpoint {filename} does not match the model of the config '
            f'{report}. Is it the checkpoint of this config?' +
            (f' {hint}' if hint else ''))
