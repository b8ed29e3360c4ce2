"""Reading a local checkpoint file: one reader for every file.

Every checkpoint this package or mmengine loads ends in
:func:`read_checkpoint_file`: ``.safetensors`` through safetensors, anything
else through ``torch.load(weights_only=True)`` (passed explicitly, so no
environment variable can turn it off) with one allow-list. A checkpoint can
never run code. Before unpickling, :mod:`.preflight` names files that are no
checkpoint at all and refuses files that ask for more memory than they could
hold; after it, the loaded object is checked for shapes of the allowed types
that mmengine never writes. Every refusal is a :class:`CheckpointError`
naming the file, which the tools report in one line. URLs and model-zoo
names are downloaded by :mod:`.download` and then read here.

Why ``weights_only=True`` still loads mmengine's resume checkpoints: since
torch 2.6 it is torch's default, and mmengine 0.10.7 resume checkpoints hold
more than tensors (the message hub's ``HistoryBuffer`` objects and the numpy
arrays and scalars in them), so stock resume fails with "Weights only load
failed". The allow-list admits exactly the globals those checkpoints were
measured to contain (listed by
``torch.serialization.get_unsafe_globals_in_checkpoint`` on checkpoints of
an mmengine toy run and of the detection and segmentation configs):

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

Allowed types can still be combined in ways mmengine never writes: a
``HistoryBuffer`` state whose ``statistics_methods`` maps a name to another
allowed callable (``numpy.ndarray``, the ``getattr`` stand-in ...) is put
by ``HistoryBuffer.__setstate__`` into the class-level table that every
buffer of the process calls. :func:`read_checkpoint_file` therefore restores
that table after every read and refuses a file that changed it, that
holds a ``HistoryBuffer`` with other fields than mmengine's three, or a
numpy array of a non-numeric dtype (``numpy.dtype('O')`` is a call of an
allowed global, so object arrays of allowed objects would load).

"""
from __future__ import annotations

import os
import os.path as osp
import pickle
import zipfile
from typing import Any, Callable, Optional

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

from .preflight import check_allocations, not_a_checkpoint

# the numbers a HistoryBuffer or a logged metric may hold
NUMERIC_DTYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8',
                  'uint16', 'uint32', 'uint64', 'float16', 'float32',
                  'float64')
# HistoryBuffer._set_default_statistics registers exactly these
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')
# the instance fields of an mmengine HistoryBuffer after unpickling
HISTORY_BUFFER_FIELDS = {'max_length': int, '_log_history': np.ndarray,
                         '_count_history': np.ndarray}
# what the type check looks into, and how many distinct ones at most (a
# resume checkpoint of the largest configs holds a few thousand)
CONTAINERS = (dict, list, tuple, np.ndarray, HistoryBuffer)
MAX_OBJECTS = 1_000_000


class CheckpointError(ValueError):
    """A checkpoint that cannot be used. The tools report every such error
    in one line naming the file; each kind is also the exception type code
    written for torch's and mmengine's errors expects."""


class UnsafeCheckpointError(CheckpointError, pickle.UnpicklingError):
    """The file holds objects outside the allow-list, or allowed objects
    in a shape mmengine never writes: it was not loaded."""


class UnreadableCheckpointError(CheckpointError, RuntimeError):
    """The file is truncated, not ``torch.save`` output, or an unreadable
    safetensors file."""


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




# ---------------------------------------------------------------------------
# one reader
# ---------------------------------------------------------------------------

def read_checkpoint_file(filename: str,
                         map_location: Any = 'cpu') -> Any:
    """Read a local checkpoint file without ever running code from it.

    ``.safetensors`` files go through safetensors; anything else through
    ``torch.load(weights_only=True)`` with the allow-list above.

    Args:
        filename: Local path; ``~`` is expanded.
        map_location: As in ``torch.load``. Defaults to 'cpu'.

    Returns:
        What the file holds (a dict for every checkpoint this package reads).

    Raises:
        FileNotFoundError: If there is no such file.
        UnsafeCheckpointError: If the file holds objects outside the
            allow-list (a crafted file, or not a checkpoint), or a
            ``HistoryBuffer`` in a shape mmengine never writes.
        UnreadableCheckpointError: If the file is truncated, not
            ``torch.save`` output, or an unreadable safetensors file.
    """
    allow_mmengine_checkpoint_types()
    filename = osp.expanduser(os.fspath(filename))
    if not osp.isfile(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    try:
        what = not_a_checkpoint(filename)
    except PermissionError:
        raise UnreadableCheckpointError(
            f'{filename} cannot be read: permission denied (the file is '
            'there; its permissions do not let this user read it)') from None
    if what:
        raise UnreadableCheckpointError(
            f'{filename} is not a checkpoint: {what}')
    if filename.endswith('.safetensors'):
        from safetensors.torch import load_file
        try:
            device = map_location if isinstance(map_location, str) else 'cpu'
            return load_file(filename, device=device)
        except Exception as err:  # safetensors raises its own error types
            raise UnreadableCheckpointError(
                f'{filename} is not a readable safetensors file '
                f'({type(err).__name__}: {err})') from err
    check_allocations(filename, lambda problem: UnsafeCheckpointError(
        f'{filename} asks for more memory than a file of its size could '
        f'fill, so it was not loaded: {problem}'))
    # what unpickling an mmengine buffer registers anyway, then the table
    HistoryBuffer()._set_default_statistics()
    statistics = dict(HistoryBuffer._statistics_methods)
    try:
        checkpoint = torch.load(filename, map_location=map_location,
                                weights_only=True)
    except MemoryError:
        raise UnsafeCheckpointError(
            f'{filename} needs more memory than this machine has to load, '
            'so it was not loaded') from None
    except pickle.UnpicklingError as err:
        raise UnsafeCheckpointError(
            f'{filename} contains objects that are not allowed in a '
            'checkpoint, so it was not loaded (a checkpoint written by '
            'mmengine or torch.save of tensors loads; a pickle that would '
            f'run code is refused): {_what_torch_refused(err)}') from None
    except Exception as err:  # torch's errors for damaged files vary
        if zipfile.is_zipfile(filename):
            # a readable archive: the error is about its contents
            raise UnreadableCheckpointError(
                f'{filename}: {_first_line(err)}') from err
        raise UnreadableCheckpointError(
            f'{filename} is not a complete checkpoint: truncated (e.g. '
            'by a crash while it was written, or an interrupted download) '
            f'or not written by torch.save ({type(err).__name__}: '
            f'{_first_line(err)})') from err
    finally:
        planted = HistoryBuffer._statistics_methods != statistics
        if planted:  # undo, whatever happens next
            HistoryBuffer._statistics_methods.clear()
            HistoryBuffer._statistics_methods.update(statistics)
    problem = ('it replaces the statistics methods of every HistoryBuffer'
               if planted else _unexpected_object(checkpoint))
    if problem:
        raise UnsafeCheckpointError(
            f'{filename} is not a checkpoint mmengine writes, so it was not '
            f'loaded: {problem}')
    return checkpoint


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [''])[0]


def _what_torch_refused(err: pickle.UnpicklingError) -> str:
    """The line of torch's weights-only error that names what the file
    asked for, without torch's advice around it (to load with
    ``weights_only=False``, or to allow-list the global: a checkpoint here
    is never loaded either way)."""
    for line in str(err).splitlines():
        line = line.split('WeightsUnpickler error:')[-1].strip()
        if line and not any(word in line for word in (
                'weights_only', 'safe_globals', 'Check the documentation',
                'Weights only load failed', 'trust')):
            return line
    return ''


def _unexpected_object(obj: Any) -> Optional[str]:
    """What in ``obj`` (searched through dicts, lists and tuples) mmengine
    never writes, or None: every numpy array must be numeric (an object
    array can be built by calling the allowed ``numpy.dtype('O')``), and
    every ``HistoryBuffer`` must have exactly mmengine's fields, an int and
    two numeric arrays.

    Each container is entered once, however many references to it the
    file holds (pickle writes a shared object once and then refers to it:
    four levels of 1000 references to one list are 10 KB and 1e12 paths),
    and at most :data:`MAX_OBJECTS` of them.
    """
    seen: set[int] = set()  # the ids of the containers visited
    stack = [(obj, 0)]
    while stack:
        obj, depth = stack.pop()
        if not isinstance(obj, CONTAINERS) or id(obj) in seen:
            continue
        seen.add(id(obj))
        if len(seen) > MAX_OBJECTS:
            return f'more than {MAX_OBJECTS} distinct containers'
        if isinstance(obj, np.ndarray):
            if obj.dtype.name not in NUMERIC_DTYPES:
                return f'a numpy array of dtype {obj.dtype.name}'
            continue
        if isinstance(obj, HistoryBuffer):
            fields = vars(obj)
            if set(fields) != set(HISTORY_BUFFER_FIELDS):
                return f'a HistoryBuffer with the fields {sorted(fields)}'
            for name, kind in HISTORY_BUFFER_FIELDS.items():
                if not isinstance(fields[name], kind):
                    return (f'a HistoryBuffer whose {name} is a '
                            f'{type(fields[name]).__name__}')
            children = [fields['_log_history'], fields['_count_history']]
        elif depth > 32:  # deeper than any checkpoint mmengine writes
            return 'objects nested more than 32 levels deep'
        elif isinstance(obj, dict):
            children = obj.values()
        else:  # a list or a tuple
            children = obj
        # a container is entered once: the walk costs one step per
        # reference, and a file holds at least a byte per reference
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, CONTAINERS)
                     and id(child) not in seen)
    return None


allow_mmengine_checkpoint_types()
# what the tools report in one line, naming the file: a crafted, truncated
# or mismatching checkpoint (CheckpointMismatchError is a CheckpointError)
CHECKPOINT_ERRORS = (CheckpointError, )
