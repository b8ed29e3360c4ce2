"""What a checkpoint file is, and what it would make the loader allocate,
read before it is unpickled.

:func:`not_a_checkpoint` names the files that are no checkpoint at all, in
the words a user can act on: an empty file, a git-lfs pointer (``git lfs
pull`` was not run), an HTML page (an error or login page saved in place
of a download), a text file, or bytes of no checkpoint format.

``torch.load(weights_only=True)`` runs no code of the file's choosing, but
some of the callables it allows allocate as much memory as their arguments
ask for: ``bytearray(N)``, ``numpy.ndarray(shape)``, numpy's
``_reconstruct(ndarray, shape, dtype)``, and a storage whose declared size
the loader allocates before reading its bytes (the legacy format). A 1.5 KB
file can ask for terabytes. :func:`check_allocations` replays the file's
pickle with every global replaced by an inert stand-in that only records
what it was called with, adds up the bytes those calls would allocate, and
refuses a file that asks for more than it could hold
(:data:`ALLOCATION_LIMIT`).

The replay is Python's own pure-Python unpickler: every object it builds
comes from the file's bytes (lists, dicts, numbers, strings, stand-ins), so
it costs time and memory in proportion to the file's pickle, which for a
checkpoint is small (the tensor data lies outside it).
"""
from __future__ import annotations

import io
import math
import os
import pickle
import zipfile
from typing import Any, Callable, Optional

# bytes the loader may allocate: twice the file (numpy arrays are counted
# once as the bytes in the pickle and once as the array built from them),
# plus room for small files
ALLOCATION_LIMIT = (2, 16 << 20)
# bytes per element of torch's typed storages
_STORAGE_ITEMSIZE = {
    'BoolStorage': 1, 'ByteStorage': 1, 'CharStorage': 1,
    'ShortStorage': 2, 'HalfStorage': 2, 'BFloat16Storage': 2,
    'IntStorage': 4, 'FloatStorage': 4, 'LongStorage': 8,
    'DoubleStorage': 8, 'ComplexFloatStorage': 8,
    'ComplexDoubleStorage': 16, 'UntypedStorage': 1,
}
# protocol 2 writes the builtins under their Python 2 module name
_BYTEARRAY = ('builtins.bytearray', '__builtin__.bytearray')
_RECONSTRUCT = ('numpy.core.multiarray._reconstruct',
                'numpy._core.multiarray._reconstruct')


class AllocationTooLargeError(ValueError):
    """The file's pickle asks for more memory than the file could hold."""


class _Stand:
    """Base of the stand-ins for the globals of a pickle: calling one (or
    building an instance with ``__new__``) records the call and nothing
    else."""

    qualname = ''
    scan: Optional['_Scan'] = None

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args, obj.state, obj.items = args, None, []
        if cls.scan is not None:
            cls.scan.called(cls.qualname, args, kwargs)
        return obj

    def __init__(self, *args, **kwargs) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state
        if self.scan is not None:
            self.scan.built(self, state)

    # what pickle's APPEND(S) and SETITEM(S) call on what a global built
    def append(self, item: Any) -> None:
        self.items.append(item)

    def extend(self, items: Any) -> None:
        self.items.extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items.append((key, value))


def _count(shape: Any) -> int:
    """The number of elements of a shape of ints, or raises."""
    if isinstance(shape, int):
        shape = (shape, )
    if not isinstance(shape, (tuple, list)) or not all(
            isinstance(n, int) and n >= 0 for n in shape):
        raise AllocationTooLargeError(f'an array of the shape {shape!r}')
    return math.prod(shape)


def _itemsize(dtype: Any) -> int:
    """Bytes per element of a dtype given as a name or a ``numpy.dtype``
    stand-in; 16 (the most) when it cannot be told."""
    import numpy as np
    if isinstance(dtype, _Stand) and dtype.args:
        dtype = dtype.args[0]
    if isinstance(dtype, bytes):
        dtype = dtype.decode('latin1')
    if isinstance(dtype, str):
        try:
            return np.dtype(dtype).itemsize
        except TypeError:
            pass
    return 16


class _Scan(pickle._Unpickler):
    """Replays a pickle with stand-ins, adding up what it asks to allocate.

    Attributes:
        requested: Bytes asked for by allocating calls and storages.
        storages: Declared bytes per storage key.
    """

    def __init__(self, file: io.BufferedIOBase) -> None:
        super().__init__(file, encoding='latin1')
        self.requested = 0
        self.storages: dict[str, int] = {}
        self._classes: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> type:
        qualname = f'{module}.{name}'
        if qualname not in self._classes:
            self._classes[qualname] = type(
                name, (_Stand, ), dict(qualname=qualname, scan=self))
        return self._classes[qualname]

    def persistent_load(self, pid: Any) -> Any:
        # torch: ('storage', storage type, key, location, numel[, view])
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == 'storage':
            kind = getattr(pid[1], 'qualname', '').rsplit('.', 1)[-1]
            numel = pid[4]
            if not isinstance(numel, int) or numel < 0:
                raise AllocationTooLargeError(
                    f'a storage of {numel!r} elements')
            size = numel * _STORAGE_ITEMSIZE.get(kind, 16)
            key = str(pid[2])
            if key not in self.storages:
                self.storages[key] = size
                self.requested += size
        return _Stand()

    def called(self, qualname: str, args: tuple, kwargs: dict) -> None:
        if qualname in _BYTEARRAY and args:
            data = args[0]
            self.requested += data if isinstance(data, int) else len(
                data) if isinstance(data, (bytes, str, list)) else _count(
                    data)
        elif qualname == 'numpy.ndarray':
            shape = args[0] if args else kwargs.get('shape', ())
            dtype = args[1] if len(args) > 1 else kwargs.get('dtype', 'f8')
            self.requested += _count(shape) * _itemsize(dtype)
        elif qualname in _RECONSTRUCT and len(args) == 3:
            self.requested += _count(args[1]) * _itemsize(args[2])

    def built(self, obj: _Stand, state: Any) -> None:
        # numpy's ndarray.__setstate__((version, shape, dtype, fortran,
        # data)) allocates the array before it copies the data in
        if obj.qualname in _RECONSTRUCT and isinstance(state, tuple) \
                and len(state) == 5:
            self.requested += _count(state[1]) * _itemsize(state[2])


# what a git-lfs pointer file starts with
LFS_POINTER = b'version https://git-lfs.github.com/spec/'


def not_a_checkpoint(filename: str) -> Optional[str]:
    """What the file is, if it cannot be a checkpoint at all; else None.

    A checkpoint is a zip archive (``torch.save``), a pickle (torch's
    legacy format: its first byte is pickle's PROTO opcode) or a
    safetensors file (an 8-byte header length, then a JSON header).

    Raises:
        PermissionError: If the file cannot be opened for reading.
    """
    with open(filename, 'rb') as file:
        head = file.read(512)
    if not head:
        return ('the file is empty (0 bytes): an interrupted download or '
                'copy?')
    if head.startswith(LFS_POINTER):
        return ('it is a git-lfs pointer, not the file it points to: run '
                '`git lfs pull` in its repository')
    start = head.lstrip().lower()
    if start.startswith((b'<!doctype html', b'<html', b'<?xml', b'<head')) \
            or b'<html' in start[:200]:
        return ('it is an HTML page (an error or login page saved in '
                'place of the download?)')
    if filename.endswith('.safetensors'):
        if len(head) >= 9 and head[8:9] == b'{':
            return None  # a header: safetensors tells more
    elif head.startswith(b'PK\x03\x04') or head[:1] == b'\x80':
        return None  # a zip archive or a pickle: torch.load tells more
    text = None
    for cut in range(4):  # the 512 bytes may end inside a character
        try:
            text = head[:len(head) - cut].decode('utf-8')
            break
        except UnicodeDecodeError:
            pass
    if text is not None and all(c.isprintable() or c in '\t\r\n\f\v'
                                for c in text):
        return ('it is a text file (an interrupted download, or the wrong '
                'file?)')
    return ('its bytes are no checkpoint format (neither a torch.save '
            'archive, a legacy torch file nor safetensors): an interrupted '
            'or corrupted download?')


def _replay(file: io.BufferedIOBase, pickles: int = 1) -> _Scan:
    """Replay ``pickles`` consecutive pickles of ``file``."""
    scan = _Scan(file)
    for _ in range(pickles):
        scan.load()
    return scan


def check_allocations(filename: str, refuse: Callable[[str], Exception]
                      ) -> None:
    """Refuse a torch checkpoint whose pickle asks to allocate more than
    the file could justify.

    A zip checkpoint (``torch.save``'s format) is replayed from its
    ``data.pkl``, and each storage must fit the record that holds its
    bytes; a legacy one (``_use_new_zipfile_serialization=False``) from its
    fourth pickle (after the magic number, protocol and system info). What
    the replay cannot parse is left to ``torch.load`` to report.

    Args:
        filename: The checkpoint file.
        refuse: Makes the exception to raise from a description of what
            is asked for.

    Raises:
        Whatever ``refuse`` returns: if the bytes asked for exceed
            ``ALLOCATION_LIMIT`` of the file's size, or a storage declares
            more bytes than its record holds.
    """
    size = os.path.getsize(filename)
    factor, extra = ALLOCATION_LIMIT
    limit = factor * size + extra
    try:
        if zipfile.is_zipfile(filename):
            with zipfile.ZipFile(filename) as archive:
                members = {info.filename: info for info in archive.infolist()}
                unpacked = sum(info.file_size for info in members.values())
                if unpacked > limit:
                    raise refuse(f'its archive unpacks to {unpacked} bytes '
                                 f'from {size}')
                pkl = next((name for name in members
                            if name.endswith('data.pkl')), None)
                if pkl is None:
                    return
                scan = _replay(io.BytesIO(archive.read(pkl)))
                root = pkl[:-len('data.pkl')]
                for key, declared in scan.storages.items():
                    record = members.get(f'{root}data/{key}')
                    held = record.file_size if record else 0
                    if declared > max(held, 16):
                        raise refuse(
                            f'a tensor storage declares {declared} bytes '
                            f'and its record holds {held}')
        else:
            with open(filename, 'rb') as file:
                scan = _replay(file, pickles=4)
    except AllocationTooLargeError as err:
        raise refuse(str(err)) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError,
            AttributeError, IndexError, KeyError, zipfile.BadZipFile,
            RecursionError, UnicodeDecodeError):
        return  # torch.load reports what it cannot read
    if scan.requested > limit:
        raise refuse(f'its pickle asks for {scan.requested} bytes of '
                     f'memory in a file of {size}')
