"""Checkpoints survive a crash during saving (convnext_dense/engine/
atomic_save.py and ``AtomicCheckpointHook``; the writer itself,
convnext_dense/fileio.py, is tested in tests/test_fileio.py).

The crash is simulated in a subprocess: the write of a chosen file stops
half-way and the process ends with ``os._exit`` (no cleanup runs, as after a
SIGKILL). With the reliability hooks the previous checkpoint and the
``last_checkpoint`` pointer stay valid and a resumed run ends exactly where
an uninterrupted one does; mmengine's stock ``CheckpointHook`` is run the
same way as the control that shows what is being prevented.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from mmengine.fileio import get_file_backend
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint

from convnext_dense.engine.atomic_save import (AtomicLocalBackend,
                                               remove_partial_files)
from convnext_dense.checkpoint.reader import allow_mmengine_checkpoint_types

from .toy_runner import (assert_same_run, build_cfg, reference_run, run_toy,
                         train_in_process)

CRASHED = 3  # exit status of toy_runner --die-while-writing


@pytest.fixture(scope='module')
def reference(tmp_path_factory) -> Path:
    return reference_run(tmp_path_factory.mktemp('toy'))


def partial_files(work_dir: Path) -> list:
    return sorted(p.name for p in work_dir.glob('.*.partial'))


def test_backend_is_registered_and_cleans_partial_files(tmp_path):
    backend = get_file_backend(
        str(tmp_path), backend_args=dict(backend='atomic_local'))
    assert isinstance(backend, AtomicLocalBackend)
    backend.put(b'\x00\x01', tmp_path / 'a.pth')
    backend.put_text('text', tmp_path / 'b.txt')
    assert (tmp_path / 'a.pth').read_bytes() == b'\x00\x01'
    assert (tmp_path / 'b.txt').read_text() == 'text'
    leftover = tmp_path / '.a.pth.123.abcd.partial'
    leftover.write_bytes(b'half')
    assert remove_partial_files(str(tmp_path)) == [str(leftover)]
    assert (tmp_path / 'a.pth').exists()


@pytest.mark.slow
def test_crash_while_saving_checkpoint_then_resume(reference, tmp_path):
    # max_keep_ckpts=1: saving epoch 2 makes epoch 1 outdated
    crashed = run_toy(tmp_path, '--max-keep-ckpts', '1',
                      '--die-while-writing', 'epoch_2.pth')
    assert crashed.returncode == CRASHED, crashed.stdout[-3000:]

    # the half-written file never got the checkpoint's name ...
    assert not (tmp_path / 'epoch_2.pth').exists()
    assert len(partial_files(tmp_path)) == 1
    # ... and the previous checkpoint, which the pointer names, is intact
    previous = tmp_path / 'epoch_1.pth'
    assert (tmp_path / 'last_checkpoint').read_text() == str(previous)
    allow_mmengine_checkpoint_types()
    assert _load_checkpoint(str(previous), 'cpu')['meta']['epoch'] == 1

    resumed = train_in_process(
        tmp_path, resume=True, checkpoint=dict(max_keep_ckpts=1))
    assert 'resumed epoch: 1, iter: 16' in resumed[2]
    assert partial_files(tmp_path) == []
    # max_keep_ckpts=1 still holds after the resume
    assert [p.name for p in tmp_path.glob('*.pth')] == ['epoch_3.pth']
    assert_same_run(resumed, reference)


@pytest.mark.slow
def test_stock_hook_crash_while_saving_loses_resume_point(tmp_path):
    """The control: mmengine's CheckpointHook, the same crash."""
    crashed = run_toy(tmp_path, '--stock', '--max-keep-ckpts', '1',
                      '--die-while-writing', 'epoch_2.pth')
    assert crashed.returncode == CRASHED, crashed.stdout[-3000:]
    # a truncated file under the final name ...
    allow_mmengine_checkpoint_types()
    # (torch itself says "OSError: [Errno 22] Invalid argument"; our loader
    # names the file)
    with pytest.raises(RuntimeError,
                       match='epoch_2.pth is not a complete checkpoint'):
        _load_checkpoint(str(tmp_path / 'epoch_2.pth'), 'cpu')
    # ... and the pointer names the checkpoint deleted before the save
    pointed = (tmp_path / 'last_checkpoint').read_text()
    assert pointed == str(tmp_path / 'epoch_1.pth')
    assert not Path(pointed).exists()
    runner = Runner.from_cfg(
        build_cfg(str(tmp_path), resume=True, reliable=False,
                  experiment_name=f'stock_crash_{os.getpid()}'))
    with pytest.raises(FileNotFoundError, match='epoch_1.pth'):
        runner.train()


@pytest.mark.slow
@pytest.mark.parametrize('reliable', [True, False])
def test_crash_while_updating_pointer(tmp_path, reliable, reference):
    # the second pointer update: from epoch_1.pth to epoch_2.pth
    args = [] if reliable else ['--stock']
    crashed = run_toy(tmp_path, *args, '--die-while-writing',
                      'last_checkpoint@2')
    assert crashed.returncode == CRASHED, crashed.stdout[-3000:]
    allow_mmengine_checkpoint_types()
    # the pointer is written after the checkpoint, which is complete
    assert _load_checkpoint(str(tmp_path / 'epoch_2.pth'),
                            'cpu')['meta']['epoch'] == 2
    pointed = (tmp_path / 'last_checkpoint').read_text()
    if reliable:
        # still the previous, complete pointer
        assert pointed == str(tmp_path / 'epoch_1.pth')
        resumed = train_in_process(tmp_path, resume=True)
        assert 'resumed epoch: 1, iter: 16' in resumed[2]
        assert_same_run(resumed, reference)
    else:
        # stock: the first half of the new path, naming nothing
        assert pointed == str(tmp_path / 'epoch_2.pth')[:len(
            str(tmp_path / 'epoch_2.pth')) // 2]
        runner = Runner.from_cfg(
            build_cfg(str(tmp_path), resume=True, reliable=False,
                      experiment_name=f'stock_pointer_{os.getpid()}'))
        with pytest.raises(FileNotFoundError, match='can not be found'):
            runner.train()
