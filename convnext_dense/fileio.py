"""How the toolkit writes files: whole or not at all, never through a
link, never over its own inputs.

:func:`atomic_open` is the one writer of every file the toolkit creates
(checkpoints through :mod:`convnext_dense.engine.atomic_save`, the
``last_checkpoint`` pointer, downloads, converted checkpoints, ONNX files,
the toy data sets' manifests, the config a training dumps): the data go to
a hidden ``.NAME.<pid>.<random>.partial`` file in the destination's folder,
created exclusively (never another writer's file, never through a symbolic
link), are flushed and ``fsync``-ed, and the file is renamed over the
destination with ``os.replace``, atomic within a file system; the rename is
made durable by an ``fsync`` of the folder. A reader sees the old file or
the complete new one; an exception removes the partial file and leaves the
old file as it was; a kill leaves at most the hidden partial file, which
:func:`remove_partial_files` deletes (``AtomicCheckpointHook`` does when a
training starts). Files that are opened in place, such as the work-dir
lock, go through :func:`open_nofollow`.

:func:`check_outputs` is the one output guard of every tool that writes
(``tools/test.py --show-dir/--out/--work-dir``, ``tools/infer.py``,
``tools/export_onnx.py``, ``tools/convert_checkpoint.py``, the demo,
``tools/train.py``): an output may not be an input (an image folder, an
annotation file, a checkpoint, a config) nor lie inside an input folder.
Paths are compared after resolving symbolic links, and existing files also
by device and inode, so neither a link nor a hard link hides an input.

This module imports nothing from the rest of the package; every layer may
use it.
"""
from __future__ import annotations

import contextlib
import errno
import glob
import os
import os.path as osp
import secrets
from typing import IO, Iterable, Iterator, Optional, Union

PARTIAL_SUFFIX = '.partial'
# 0 where the platform has no O_NOFOLLOW (Windows)
O_NOFOLLOW = getattr(os, 'O_NOFOLLOW', 0)
PathLike = Union[str, os.PathLike]

# an (what, path) pair: what names the path for a person, e.g. '--show-dir'
# or 'the input folder test_dataloader.dataset.data_prefix.img'
Named = tuple[str, Optional[str]]


class OutputOverwritesInputError(ValueError):
    """An output path would replace an input, or lies inside an input
    folder (where it would mix with the inputs, or a later run would take
    it as one)."""


def same_path(a: str, b: str) -> bool:
    """Whether writing ``a`` would write ``b``: the same path once links
    are resolved, or (both existing) the same file by device and inode."""
    if osp.realpath(a) == osp.realpath(b):
        return True
    try:
        return osp.samefile(a, b)
    except OSError:  # either does not exist (yet)
        return False


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def check_outputs(outputs: Iterable[Named],
                  inputs: Iterable[Named],
                  why: str = 'the outputs would replace inputs or mix with '
                  'them. Choose a path outside the inputs') -> None:
    """Refuse outputs that would replace an input or land inside one.

    Call it before any work starts. Entries whose path is None or empty are
    skipped, so optional outputs can be passed as they are.

    Args:
        outputs: ``(what, path)`` of each file or folder the tool will
            write, e.g. ``('--show-dir', args.show_dir)``.
        inputs: ``(what, path)`` of each file or folder it reads, e.g.
            ``('the input folder', 'data/coco/val2017')``.
        why: The rest of the message: what would go wrong, what to do.

    Raises:
        OutputOverwritesInputError: Naming the output, the input and how
            they meet: ``--show-dir X is the input folder Y: ...`` or
            ``... is inside ...``.
    """
    resolved = [(what, path, osp.realpath(path), osp.isdir(path))
                for what, path in inputs if path]
    for what, path in outputs:
        if not path:
            continue
        real = osp.realpath(path)
        for in_what, in_path, in_real, is_dir in resolved:
            if real == in_real or same_path(path, in_path):
                relation = 'is'
            elif is_dir and _inside(real, in_real):
                relation = 'is inside'
            else:
                continue
            raise OutputOverwritesInputError(
                f'{what} {path} {relation} {in_what} {in_path}: {why}')


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------

def partial_name(path: str) -> str:
    """A fresh hidden name next to ``path`` for the file being written."""
    dirname, basename = osp.split(path)
    return osp.join(
        dirname,
        f'.{basename}.{os.getpid()}.{secrets.token_hex(4)}{PARTIAL_SUFFIX}')


def fsync_dir(dirname: str) -> None:
    """Make a rename in ``dirname`` durable (POSIX; a no-op elsewhere)."""
    if not hasattr(os, 'O_DIRECTORY'):
        return
    fd = os.open(dirname, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def named_error(err: BaseException, path: str, doing: str):
    """``err`` with ``path`` and ``doing`` in it if it is an OSError without
    a file name (a full disk says only "[Errno 28] No space left on
    device"); else ``err`` itself."""
    if not (isinstance(err, OSError) and err.errno is not None
            and err.filename is None):
        return err
    return OSError(err.errno, f'{err.strerror} ({doing})', path)


def _named(err: BaseException, path: str, written: Optional[int]):
    size = '' if written is None else f'writing {written} bytes; '
    return named_error(err, path,
                       f'{size}the previous file, if any, is unchanged')


def _create_partial(path: str) -> tuple[int, str]:
    dirname = osp.dirname(osp.abspath(path))
    os.makedirs(dirname, exist_ok=True)
    partial = partial_name(path)
    # O_EXCL: a new file, never another writer's, never through a link;
    # 0o666 less the umask, as open(path, 'w') gives
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_NOFOLLOW,
                 0o666)
    return fd, partial


def _commit(partial: str, path: str) -> None:
    os.replace(partial, path)
    fsync_dir(osp.dirname(osp.abspath(path)))


@contextlib.contextmanager
def _replacing(path: str) -> Iterator[tuple[str, dict]]:
    """The one write path: yields the new hidden partial file's name and a
    state dict (``fd``: its open descriptor, for the caller to take;
    ``written``: bytes written, for the error message); renames the partial
    file over ``path`` when the block ends, or removes it on an exception,
    which is re-raised with ``path`` named."""
    fd, partial = _create_partial(path)
    state = {'fd': fd, 'written': None}
    try:
        yield partial, state
        _commit(partial, path)
    except BaseException as err:
        if state['fd'] is not None:
            with contextlib.suppress(OSError):
                os.close(state['fd'])
        with contextlib.suppress(FileNotFoundError):
            os.remove(partial)
        named = _named(err, path, state['written'])
        if named is err:
            raise
        raise named from err


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = 'wb',
                encoding: Optional[str] = None) -> Iterator[IO]:
    """Open ``path`` for writing as a whole: the file appears, complete,
    when the block ends without an exception.

    Creates the parent folder if needed. ``path`` is replaced if it exists
    (a symbolic link there is replaced, its target left alone).

    Args:
        path: The destination.
        mode: 'wb' or 'w'. Defaults to 'wb'.
        encoding: For mode 'w'. Defaults to None: 'utf-8'.

    Raises:
        OSError: As raised while writing; one without a file name (a full
            disk) gets ``path`` and the number of bytes written.
    """
    if mode not in ('wb', 'w'):
        raise ValueError(f"mode must be 'wb' or 'w'; got {mode!r}")
    with _replacing(os.fspath(path)) as (_, state):
        file = os.fdopen(state['fd'], mode, **({} if 'b' in mode else dict(
            encoding=encoding or 'utf-8')))
        state['fd'] = None  # the file object owns it now
        try:
            yield file
            file.flush()
            os.fsync(file.fileno())
        except BaseException:
            with contextlib.suppress(Exception):
                state['written'] = file.tell()
            raise
        finally:
            with contextlib.suppress(Exception):
                file.close()


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[str]:
    """:func:`atomic_open` for writers that take a file name (the ONNX
    exporter): yields the hidden partial file's name (created empty) to
    write to by name, as often as needed; on success it is fsync-ed and
    renamed over ``path``."""
    with _replacing(os.fspath(path)) as (partial, state):
        os.close(state['fd'])
        state['fd'] = None
        yield partial
        fd = os.open(partial, os.O_RDONLY | O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(data: bytes, path: PathLike) -> None:
    """Write ``data`` to ``path`` with :func:`atomic_open`."""
    with atomic_open(path) as file:
        file.write(data)


def move_file(src: PathLike, dst: PathLike) -> None:
    """Move the finished file ``src`` to ``dst`` (same file system), whole
    or not at all, and make the rename durable."""
    _commit(os.fspath(src), os.fspath(dst))


def remove_partial_files(dirname: str) -> list[str]:
    """Delete the partial files interrupted writes left in ``dirname`` (not
    recursive); returns their paths."""
    removed = []
    for path in glob.glob(osp.join(glob.escape(dirname),
                                   f'.*{PARTIAL_SUFFIX}')):
        if osp.isfile(path):
            os.remove(path)
            removed.append(path)
    return removed


def open_nofollow(path: PathLike, flags: int, mode: int = 0o644) -> int:
    """``os.open`` that refuses a symbolic link at ``path`` (for files
    written in place, such as a lock). Returns the descriptor.

    Raises:
        OSError: For a link: naming ``path`` and saying so.
    """
    path = os.fspath(path)
    try:
        return os.open(path, flags | O_NOFOLLOW, mode)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise OSError(
                err.errno, f'{path} is a symbolic link; refusing to write '
                'through it (it could point anywhere). Remove it',
                path) from None
        raise
