"""Atomic writes of local files, and an mmengine file backend that uses them.

mmengine's ``save_checkpoint`` serialises the checkpoint into memory and
hands the bytes to the file backend's ``put``; the stock ``LocalBackend``
opens the destination with ``'wb'`` and writes into it. A process killed in
the middle (out of memory, preempted, Ctrl-C twice) leaves a truncated
``epoch_N.pth`` under the final name, which a later ``--resume`` then fails
to read.

Here every write goes through :func:`convnext_dense.fileio.atomic_open`:
a hidden ``.NAME.<pid>.<random>.partial`` file in the destination's
directory, flushed and ``fsync``-ed, then renamed over the destination; a
reader sees either the old file or the complete new one, never a part.
:func:`~convnext_dense.fileio.remove_partial_files` cleans up what a kill
leaves.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

from mmengine.fileio import LocalBackend, register_backend

from convnext_dense.fileio import (PARTIAL_SUFFIX, atomic_write,  # noqa: F401
                                   remove_partial_files)


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
