"""The work-dir lock (convnext_dense/engine/work_dir_lock.py) never writes
through a symbolic link and names its file on a full disk. (Two trainings
in one work dir: tests/e2e/test_bad_input.py.)"""
from __future__ import annotations

import errno
import os

import pytest

from convnext_dense.engine.work_dir_lock import work_dir_lock


def test_lock_through_a_link_is_refused(tmp_path):
    # a link where the lock goes: opened with O_CREAT|O_RDWR it was
    # truncated and overwritten with the lock record, then emptied
    victim = tmp_path / 'notes.txt'
    victim.write_text('keep me')
    (tmp_path / 'work').mkdir()
    lock = tmp_path / 'work' / '.train.lock'
    lock.symlink_to(victim)
    with pytest.raises(OSError, match=f'{lock} is a symbolic link; '
                       'refusing to write through it'):
        with work_dir_lock(str(tmp_path / 'work')):
            pass
    assert victim.read_text() == 'keep me'


def test_full_disk_while_writing_the_record_names_the_file(
        tmp_path, monkeypatch):
    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(os, 'pwrite', full)
    with pytest.raises(OSError) as info:
        with work_dir_lock(str(tmp_path)):
            pass
    assert info.value.errno == errno.ENOSPC
    assert str(info.value) == (
        '[Errno 28] No space left on device (writing the training lock '
        f"record): '{tmp_path / '.train.lock'}'")
    monkeypatch.undo()
    with work_dir_lock(str(tmp_path)):  # released: usable again
        assert os.path.getsize(tmp_path / '.train.lock') > 0
