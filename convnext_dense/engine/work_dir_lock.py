"""One training per work dir at a time.

Two trainings started with the same work dir (a second ``tools/train.py``
forgotten in another terminal, a job resubmitted while the first still
runs) both wrote ``epoch_N.pth`` and ``last_checkpoint`` into it, each
overwriting the other's, without a word. :func:`work_dir_lock` takes an
exclusive ``flock`` on ``WORK_DIR/.train.lock`` for the whole training:

- a second training fails at once, naming the process that holds the lock
  (pid, host, start time, command line);
- the kernel releases a ``flock`` when its process dies, however it dies
  (``kill -9`` included), so a lock can never outlive its process. The file
  stays; the next training finds the dead process's record in it, names it
  in a warning, and takes the lock.

The lock file is never opened through a symbolic link (``O_NOFOLLOW``),
which would truncate the link's target; a full disk while the record is
written names the file. On a clean exit the record is removed.

Only the process of global rank 0
locks (``RANK``, ``SLURM_PROCID`` or ``OMPI_COMM_WORLD_RANK``); the other
ranks of the same training share its work dir.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import os.path as osp
import socket
import sys
import time
from typing import Iterator

from mmengine.logging import print_log

from convnext_dense.fileio import named_error, open_nofollow

LOCK_NAME = '.train.lock'
RANK_VARIABLES = ('RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK')


class WorkDirLockedError(RuntimeError):
    """Another training holds the work dir."""


def _global_rank() -> int:
    for name in RANK_VARIABLES:
        if os.environ.get(name, '').isdigit():
            return int(os.environ[name])
    return 0


def _describe(record: str) -> str:
    try:
        info = json.loads(record)
        return (f"process {info['pid']} on {info['host']} (started "
                f"{info['started']}: {info['command']})")
    except (ValueError, KeyError, TypeError):
        return f'a process that left {record[:200]!r}'


@contextlib.contextmanager
def work_dir_lock(work_dir: str) -> Iterator[None]:
    """Hold the work dir's training lock while the block runs.

    Creates ``work_dir`` if needed. A no-op on ranks other than 0 and where
    ``fcntl`` does not exist (Windows).

    Raises:
        WorkDirLockedError: If a live process holds the lock, naming it.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    if _global_rank() != 0:
        yield
        return
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, LOCK_NAME)
    # never through a link: it would truncate and overwrite its target
    fd = open_nofollow(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode('utf-8', 'replace')
            raise WorkDirLockedError(
                f'work dir {work_dir} is in use by another training: '
                f'{_describe(holder)}. Two trainings in one work dir '
                'overwrite each other\'s checkpoints; wait for it, stop it, '
                'or pass another --work-dir') from None
        stale = os.pread(fd, 4096, 0).decode('utf-8', 'replace').strip()
        if stale:
            print_log(
                f'{path}: {_describe(stale)} held this work dir and ended '
                'without releasing it (killed?); taking it over',
                logger='current', level=logging.WARNING)
        record = json.dumps(dict(
            pid=os.getpid(), host=socket.gethostname(),
            started=time.strftime('%Y-%m-%d %H:%M:%S'),
            command=' '.join(sys.argv)))
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record.encode('utf-8'), 0)
        except OSError as err:  # a full disk: name the file
            named = named_error(err, path, 'writing the training lock record')
            if named is err:
                raise
            raise named from err
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # a clean exit leaves no record
    finally:
        os.close(fd)  # releases the flock
