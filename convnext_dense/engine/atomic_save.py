"""Atomic writes of local files, and an mmengine file backend that uses them.

mmengine's ``save_checkpoint`` serialises the checkpoint into memory and
hands the bytes to the file backend's ``put``; the stock ``LocalBackend``
opens the destination with ``'wb'`` and writes into it. A process killed in
the middle (out of memory, preempted, Ctrl-C twice) leaves a truncated
``epoch_N.pth`` under the final name, which a later ``--resume`` then fails
to read.

Here every write goes to a temporary file in the destination's directory,
is flushed and ``fsync``-ed, and is then renamed over the destination with
``os.replace``, which POSIX and Windows make atomic within a file system:
a reader sees either the old file or the complete new one, never a part.
A write interrupted before the rename leaves only a hidden
``.NAME.<pid>.<random>.partial`` file, which no mmengine code reads;
:func:`remove_partial_files` cleans those up.
"""
from __future__ import annotations

import glob
import os
import os.path as osp
import secrets
from pathlib import Path
from typing import Union

from mmengine.fileio import LocalBackend, register_backend

PARTIAL_SUFFIX = '.partial'


def _partial_name(filepath: str) -> str:
    """A fresh hidden name next to ``filepath`` for the file being written."""
    dirname, basename = osp.split(filepath)
    return osp.join(
        dirname,
        f'.{basename}.{os.getpid()}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}')


def _fsync_dir(dirname: str) -> None:
    """Makes a rename in ``dirname`` durable (POSIX only; no-op elsewhere)."""
    if not hasattr(os, 'O_DIRECTORY'):
        return
    fd = os.open(dirname, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(data: bytes, filepath: Union[str, Path]) -> None:
    """Writes ``data`` to ``filepath`` so that no reader sees a partial file.

    Creates the parent directory if needed. The new file gets the mode a
    plain ``open(filepath, 'wb')`` would give it (``0o666`` less the umask).

    Args:
        data (bytes): The complete contents.
        filepath (str or Path): The destination; replaced if it exists.
    """
    filepath = os.fspath(filepath)
    dirname = osp.dirname(osp.abspath(filepath))
    os.makedirs(dirname, exist_ok=True)
    partial = _partial_name(filepath)
    # O_EXCL: never write into a file another writer has open
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(partial, filepath)
    except BaseException as err:
        # an exception (not a kill) mid-write: leave no partial file behind
        if osp.exists(partial):
            os.remove(partial)
        if (isinstance(err, OSError) and err.errno is not None
                and err.filename is None):
            # a full disk says only "[Errno 28] No space left on device"
            raise OSError(
                err.errno, f'{err.strerror} (writing {len(data)} bytes; the '
                'previous file, if any, is unchanged)', filepath) from err
        raise
    _fsync_dir(dirname)


def remove_partial_files(dirname: str) -> list[str]:
    """Deletes the leftovers of interrupted :func:`atomic_write` calls.

    Args:
        dirname (str): The directory to clean (not recursive).

    Returns:
        list[str]: The removed paths.
    """
    removed = []
    for path in glob.glob(osp.join(glob.escape(dirname),
                                   f'.*{PARTIAL_SUFFIX}')):
        if osp.isfile(path):
            os.remove(path)
            removed.append(path)
    return removed


@register_backend('atomic_local')
class AtomicLocalBackend(LocalBackend):
    """mmengine's ``LocalBackend`` with atomic ``put`` and ``put_text``.

    Select it with ``backend_args=dict(backend='atomic_local')`` (the
    ``convnext_dense.AtomicCheckpointHook`` does so by default).
    """

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        """Writes bytes to ``filepath`` atomically; see :func:`atomic_write`.
        """
        atomic_write(obj, filepath)

    def put_text(self,
                 obj: str,
                 filepath: Union[str, Path],
                 encoding: str = 'utf-8') -> None:
        """Writes text to ``filepath`` atomically; see :func:`atomic_write`.
        """
        atomic_write(obj.encode(encoding), filepath)
