"""The one file writer and the output guard (convnext_dense/fileio.py).

Writer: a file appears whole or not at all; a failure mid-write (an
exception, a full disk, a killed process) leaves the previous file as it
was and, after a kill, only a hidden ``.partial`` file; no write goes
through a symbolic link. Guard: an output may not be an input nor lie
inside an input folder, whatever links lead there.
"""
from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from convnext_dense import fileio
from convnext_dense.fileio import (OutputOverwritesInputError, atomic_open,
                                   atomic_path, atomic_write, check_outputs,
                                   open_nofollow, remove_partial_files)

REPO = Path(__file__).resolve().parents[1]


def partial_files(folder: Path) -> list:
    return sorted(p.name for p in folder.glob('.*.partial'))


# -- writer -------------------------------------------------------------------

def test_atomic_write_replaces_whole_file(tmp_path):
    path = tmp_path / 'sub' / 'file.bin'
    atomic_write(b'old', path)
    atomic_write(b'new contents', path)
    assert path.read_bytes() == b'new contents'
    assert partial_files(path.parent) == []
    # the mode open(path, 'wb') would give: 0o666 less the umask
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_atomic_write_interrupted_by_exception_keeps_old_file(
        tmp_path, monkeypatch):
    path = tmp_path / 'file.bin'
    atomic_write(b'old', path)

    def fail(fd):
        raise OSError('disk full')

    monkeypatch.setattr(os, 'fsync', fail)
    with pytest.raises(OSError, match='disk full'):
        atomic_write(b'new', path)
    assert path.read_bytes() == b'old'
    assert partial_files(tmp_path) == []


def test_disk_full_names_the_file(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, 'No space left on device')

    target = tmp_path / 'epoch_3.pth'
    target.write_bytes(b'previous')
    monkeypatch.setattr(fileio.os, 'fsync', full)
    with pytest.raises(OSError) as info:
        atomic_write(b'x' * 1000, target)
    assert info.value.errno == errno.ENOSPC
    assert str(info.value) == (
        '[Errno 28] No space left on device (writing 1000 bytes; the '
        f"previous file, if any, is unchanged): '{target}'")
    assert target.read_bytes() == b'previous'
    assert [p.name for p in tmp_path.iterdir()] == ['epoch_3.pth']


def test_failure_mid_write_leaves_old_file_and_no_partial(tmp_path):
    path = tmp_path / 'manifest.json'
    path.write_text('old')
    with pytest.raises(RuntimeError, match='generator failed'):
        with atomic_open(path, 'w') as f:
            f.write('{"half": ')
            f.flush()
            assert len(partial_files(tmp_path)) == 1  # written aside
            raise RuntimeError('generator failed')
    assert path.read_text() == 'old'
    assert partial_files(tmp_path) == []


@pytest.mark.slow  # ~7 s of CPU in a child interpreter
def test_kill_mid_write_leaves_old_file_and_a_hidden_partial(tmp_path):
    path = tmp_path / 'model.pth'
    path.write_bytes(b'old')
    # half written, flushed to disk, then the process ends without cleanup
    code = ('import os, sys; from convnext_dense.fileio import atomic_open\n'
            'with atomic_open(sys.argv[1]) as f:\n'
            '    f.write(b"new, half"); f.flush(); os.fsync(f.fileno())\n'
            '    os._exit(3)\n')
    result = subprocess.run([sys.executable, '-c', code, str(path)],
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    assert result.returncode == 3
    assert path.read_bytes() == b'old'
    [partial] = partial_files(tmp_path)
    assert partial.startswith('.model.pth.') and partial.endswith('.partial')
    assert (tmp_path / partial).read_bytes() == b'new, half'
    assert remove_partial_files(str(tmp_path)) == [str(tmp_path / partial)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ['model.pth']


def test_link_at_destination_is_replaced_not_followed(tmp_path):
    victim = tmp_path / 'victim.txt'
    victim.write_text('keep me')
    link = tmp_path / 'config.py'
    link.symlink_to(victim)
    with atomic_open(link, 'w') as f:
        f.write('x = 1\n')
    assert victim.read_text() == 'keep me'
    assert not link.is_symlink() and link.read_text() == 'x = 1\n'


def test_atomic_path_for_writers_that_take_a_name(tmp_path):
    out = tmp_path / 'model.onnx'
    out.write_bytes(b'old graph')
    with pytest.raises(ValueError, match='tracing failed'):
        with atomic_path(out) as partial:
            Path(partial).write_bytes(b'half a graph')
            raise ValueError('tracing failed')
    assert out.read_bytes() == b'old graph'
    assert partial_files(tmp_path) == []
    with atomic_path(out) as partial:
        Path(partial).write_bytes(b'graph')
        Path(partial).write_bytes(b'graph + metadata')  # rewritten by name
    assert out.read_bytes() == b'graph + metadata'
    assert partial_files(tmp_path) == []


def test_open_nofollow_refuses_a_link(tmp_path):
    victim = tmp_path / 'victim'
    victim.write_text('keep me')
    lock = tmp_path / '.train.lock'
    lock.symlink_to(victim)
    with pytest.raises(OSError, match=f'{lock} is a symbolic link; refusing '
                       'to write through it'):
        open_nofollow(lock, os.O_RDWR | os.O_CREAT)
    assert victim.read_text() == 'keep me'
    fd = open_nofollow(tmp_path / 'plain', os.O_RDWR | os.O_CREAT)
    os.close(fd)


def test_only_fileio_renames_files():
    """One writer: no other module of the package or the tools calls
    os.replace or os.rename."""
    callers = sorted(
        str(path.relative_to(REPO))
        for folder in ('convnext_dense', 'tools')
        for path in (REPO / folder).rglob('*.py')
        if any(call in path.read_text()
               for call in ('os.replace(', 'os.rename(')))
    assert callers == ['convnext_dense/fileio.py']


# -- guard --------------------------------------------------------------------

def test_guard_refuses_same_inside_and_linked(tmp_path):
    images = tmp_path / 'val2017'
    images.mkdir()
    (images / 'a.jpg').write_bytes(b'jpeg')
    ann = tmp_path / 'ann.json'
    ann.write_text('{}')
    link = tmp_path / 'vis'
    link.symlink_to(images)
    hard = tmp_path / 'hard.pkl'
    os.link(ann, hard)
    inputs = [('the image folder', str(images)),
              ('the annotations', str(ann))]
    folder = f'the image folder {images}'
    for out, expected in [
            (images, f'is {folder}'),
            (images / 'sub' / 'vis', f'is inside {folder}'),
            (link, f'is {folder}'),
            (link / 'x', f'is inside {folder}'),
            (ann, f'is the annotations {ann}'),
            (hard, f'is the annotations {ann}')]:
        with pytest.raises(OutputOverwritesInputError) as info:
            check_outputs([('--out', str(out))], inputs, why='no')
        assert str(info.value) == f'--out {out} {expected}: no'
    # a sibling whose name starts alike, a parent, and no path: allowed
    check_outputs([('--out', str(tmp_path / 'val2017_vis')),
                   ('--work-dir', str(tmp_path)), ('--show-dir', None)],
                  inputs)


def test_move_file_replaces_the_destination_whole(tmp_path):
    src, dst = tmp_path / 'a.png', tmp_path / 'b.png'
    src.write_bytes(b'new')
    dst.write_bytes(b'old')
    fileio.move_file(src, dst)
    assert dst.read_bytes() == b'new' and not src.exists()
