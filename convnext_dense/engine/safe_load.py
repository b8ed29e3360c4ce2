"""Let mmengine resume under ``torch.load(weights_only=True)``.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: the
unpickler only builds tensors, containers and primitive types, plus the
globals a program allow-lists. mmengine 0.10.7 calls ``torch.load`` with the
default, and a resume checkpoint holds more than weights: the message hub's
``HistoryBuffer`` objects and the numpy arrays and scalars in them. So
``--resume`` stops with "Weights only load failed".

The fix here keeps ``weights_only=True`` and allow-lists exactly the globals
that mmengine's resume checkpoints were measured to contain (listed by
``torch.serialization.get_unsafe_globals_in_checkpoint`` on checkpoints of an
mmengine toy run and of the detection and segmentation configs):

- ``numpy.ndarray``, ``numpy.dtype``, numpy's ``_reconstruct`` and
  ``scalar``, and the dtype classes of the boolean, integer and floating
  dtypes (numpy 2 builds a dtype as an instance of e.g.
  ``numpy.dtypes.Float64DType``): how numpy pickles arrays and scalars. They
  build data; none runs code the checkpoint chooses. Object, string and
  structured dtypes are left out: mmengine's buffers and metrics are numbers.
  Both module paths of the reconstructors (``numpy.core`` of numpy 1,
  ``numpy._core`` of numpy 2) map to the same functions, so a checkpoint
  written under either numpy loads under the other.
- ``mmengine.logging.HistoryBuffer``: the logged scalars of the message hub.
- ``builtins.getattr``, but only as :func:`_history_buffer_statistic`:
  ``HistoryBuffer.__getstate__`` stores its statistics methods
  (``HistoryBuffer.min`` ...), which pickle writes as
  ``getattr(HistoryBuffer, 'min')``. The stand-in returns those four methods
  and refuses anything else, so a checkpoint cannot use ``getattr`` to reach
  other attributes (and ``HistoryBuffer.__setstate__``, which puts these
  methods into a class-level table, only ever receives mmengine's own).

Nothing else is added; ``weights_only`` is never turned off.

mmengine's loader for local paths is also replaced by one that behaves the
same but names the file in every error: torch's own messages for a refused
global or a truncated file ("OSError: [Errno 22] Invalid argument") do not
say which file they are about.
"""
from __future__ import annotations

import os.path as osp
import pickle
import zipfile
from typing import Any, Callable, Optional

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

# the numbers a HistoryBuffer or a logged metric may hold
NUMERIC_DTYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8',
                  'uint16', 'uint32', 'uint64', 'float16', 'float32',
                  'float64')
# HistoryBuffer._set_default_statistics registers exactly these
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


def _history_buffer_statistic(obj: Any, name: str) -> Callable:
    """``getattr`` restricted to HistoryBuffer's own statistics methods.

    Stands in for ``builtins.getattr`` while unpickling with
    ``weights_only=True``.

    Raises:
        pickle.UnpicklingError: For any other object or attribute.
    """
    if obj is HistoryBuffer and name in HISTORY_BUFFER_STATISTICS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({obj!r}, {name!r}); only '
        f'HistoryBuffer.{{{", ".join(HISTORY_BUFFER_STATISTICS)}}} are '
        'allowed in a checkpoint')


def _numpy_reconstructors() -> list[tuple[Callable, str]]:
    """numpy's array and scalar reconstructors under both module paths."""
    try:
        multiarray = np._core.multiarray  # numpy >= 2
    except AttributeError:  # pragma: no cover - numpy 1.x
        multiarray = np.core.multiarray
    return [(getattr(multiarray, name), f'{module}.multiarray.{name}')
            for name in ('_reconstruct', 'scalar')
            for module in ('numpy.core', 'numpy._core')]


def mmengine_checkpoint_safe_globals() -> list[Any]:
    """The allow-list, in the form ``torch.serialization.add_safe_globals``
    takes: objects, or ``(object, 'module.qualname')`` pairs where the name a
    checkpoint uses differs from the object's own."""
    return [
        np.ndarray,
        np.dtype,
        # numpy 2: each dtype is an instance of its own class; in numpy 1,
        # type(np.dtype(...)) is np.dtype itself, listed already
        *(type(np.dtype(name)) for name in NUMERIC_DTYPES),
        *_numpy_reconstructors(),
        HistoryBuffer,
        (_history_buffer_statistic, 'builtins.getattr'),
    ]


def allow_mmengine_checkpoint_types() -> None:
    """Allow-lists the types of mmengine checkpoints for ``weights_only``
    loading. Idempotent: entries already allowed are not added again."""
    allowed = set(torch.serialization.get_safe_globals())
    missing = [
        entry for entry in mmengine_checkpoint_safe_globals()
        if entry not in allowed
    ]
    if missing:
        torch.serialization.add_safe_globals(missing)


@CheckpointLoader.register_scheme(prefixes='', force=True)
def load_from_local(filename: str, map_location: Optional[str] = None):
    """mmengine's local checkpoint loader, with the file named in errors.

    Registered for local paths (the empty URI prefix) in place of
    ``mmengine.runner.checkpoint.load_from_local``; like it, it calls
    ``torch.load`` with torch's default ``weights_only=True``.

    Args:
        filename (str): Local path; ``~`` is expanded.
        map_location (str, optional): As in ``torch.load``. Defaults to None.

    Returns:
        dict: The loaded checkpoint.

    Raises:
        FileNotFoundError: If there is no such file.
        pickle.UnpicklingError: If the file holds objects outside the
            allow-list: a crafted file, or not an mmengine checkpoint.
        RuntimeError: If the file is truncated or no ``torch.save`` output,
            or torch fails to load it otherwise.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    try:
        return torch.load(filename, map_location=map_location)
    except pickle.UnpicklingError as err:
        raise pickle.UnpicklingError(
            f'{filename} contains objects that are not allowed in a '
            'checkpoint, so it was not loaded (a checkpoint written by '
            'mmengine or torch.save of tensors only loads; a crafted file '
            f'would run code). {err}') from None
    except (RuntimeError, OSError, EOFError) as err:
        if zipfile.is_zipfile(filename):
            # a readable archive: the error is about its contents
            raise RuntimeError(f'{filename}: {err}') from err
        raise RuntimeError(
            f'{filename} is not a complete checkpoint: truncated (e.g. '
            'by a crash while it was written) or not written by torch.save '
            f'({type(err).__name__}: {err})') from err
