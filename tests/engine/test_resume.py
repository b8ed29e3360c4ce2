"""Resuming under torch >= 2.6 (convnext_dense/engine/safe_load.py).

- The bug: mmengine 0.10.7 checkpoints do not load with torch's default
  ``weights_only=True`` ("Weights only load failed"); with the allow-list
  they do, and ``weights_only`` stays on.
- The allow-list admits no code: crafted pickles are refused through
  mmengine's own loader, and the marker file their payload would create is
  never written.
- A run killed (SIGKILL) in the middle of an epoch and resumed with
  ``resume=True`` ends with bitwise the same weights, buffers and metric as
  an uninterrupted run of the same seed. The toy model uses dropout, so this
  needs ``ResumableRandomnessHook``; without it the resumed run differs.
"""
from __future__ import annotations

import os
import pickle
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint

from convnext_dense.engine.safe_load import (
    allow_mmengine_checkpoint_types, mmengine_checkpoint_safe_globals)

from .toy_runner import (REPO_ROOT, SCRIPT, assert_same_run, build_cfg,
                         reference_run, toy_env, train_in_process,
                         write_detector_config)


@pytest.fixture(scope='module')
def reference(tmp_path_factory) -> Path:
    return reference_run(tmp_path_factory.mktemp('toy'))


@pytest.fixture
def no_allow_list():
    """Runs a test with torch's allow-list as a fresh process has it."""
    saved = torch.serialization.get_safe_globals()
    ours = mmengine_checkpoint_safe_globals()
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(
        [g for g in saved if g not in ours])
    yield
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(saved)


def test_stock_torch_load_fails_and_allow_list_fixes_it(
        reference, no_allow_list):
    checkpoint = reference / 'epoch_2.pth'
    with pytest.raises(pickle.UnpicklingError,
                       match='Weights only load failed'):
        _load_checkpoint(str(checkpoint), map_location='cpu')

    allow_mmengine_checkpoint_types()
    loaded = _load_checkpoint(str(checkpoint), map_location='cpu')
    assert loaded['meta']['epoch'] == 2
    history = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(history, HistoryBuffer)
    assert history.mean() > 0


def test_allow_list_is_idempotent_and_exact():
    allow_mmengine_checkpoint_types()
    before = torch.serialization.get_safe_globals()
    allow_mmengine_checkpoint_types()
    assert sorted(map(repr, torch.serialization.get_safe_globals())) == \
        sorted(map(repr, before))
    names = {
        entry[1] if isinstance(entry, tuple) else
        f'{entry.__module__}.{entry.__qualname__}'
        for entry in mmengine_checkpoint_safe_globals()
    }
    # what the checkpoints were measured to contain, nothing more
    assert names == {
        'numpy.ndarray', 'numpy.dtype',
        'numpy.core.multiarray._reconstruct',
        'numpy._core.multiarray._reconstruct',
        'numpy.core.multiarray.scalar', 'numpy._core.multiarray.scalar',
        'mmengine.logging.history_buffer.HistoryBuffer', 'builtins.getattr',
        *(f'numpy.dtypes.{kind}DType' for kind in (
            'Bool', 'Int8', 'Int16', 'Int32', 'Int64', 'UInt8', 'UInt16',
            'UInt32', 'UInt64', 'Float16', 'Float32', 'Float64'))
    }


class _RunsShell:
    """Unpickling this calls ``os.system(command)``."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command, )


class _GetsAttribute:
    """Unpickling this calls ``getattr(obj, name)``."""

    def __init__(self, obj, name: str) -> None:
        self.obj, self.name = obj, name

    def __reduce__(self):
        return getattr, (self.obj, self.name)


class _BuildsHistoryBuffer:
    """Unpickles as a HistoryBuffer whose statistics table holds a payload.

    ``HistoryBuffer.__setstate__`` copies ``statistics_methods`` into the
    class-level table, a way to plant a callable for later use.
    """

    def __init__(self, payload) -> None:
        self.payload = payload

    def __reduce__(self):
        return (HistoryBuffer, (), dict(
            _log_history=[], _count_history=[], max_length=1,
            statistics_methods=dict(mean=self.payload)))


@pytest.mark.parametrize('payload', ['shell', 'getattr', 'history_buffer'])
def test_crafted_pickle_is_refused(tmp_path, payload):
    marker = tmp_path / 'pwned'
    command = f'touch {marker}'
    crafted = dict(
        shell=_RunsShell(command),
        # attributes of an allowed class other than its statistics methods
        getattr=_GetsAttribute(HistoryBuffer, '__init__'),
        history_buffer=_BuildsHistoryBuffer(_RunsShell(command)))[payload]
    path = tmp_path / 'epoch_1.pth'
    torch.save(
        dict(meta=dict(epoch=1), state_dict={}, message_hub=crafted), path)
    allow_mmengine_checkpoint_types()
    statistics_before = dict(HistoryBuffer._statistics_methods)

    with pytest.raises(pickle.UnpicklingError) as info:
        _load_checkpoint(str(path), map_location='cpu')
    message = str(info.value)
    assert message.startswith(f'{path} contains objects that are not allowed')
    if payload == 'getattr':
        assert 'only HistoryBuffer.{min, max, current, mean}' in message
    else:
        assert 'system' in message  # names the refused global
    assert not marker.exists()
    assert HistoryBuffer._statistics_methods == statistics_before


def test_kill_mid_epoch_then_resume_matches_uninterrupted(
        reference, tmp_path):
    work_dir = tmp_path / 'killed'
    # 16 iterations per epoch, 0.1 s each: epoch 2 runs for 1.6 s after
    # epoch 1's checkpoint appears
    proc = subprocess.Popen(
        [sys.executable, SCRIPT, str(work_dir), '--iter-sleep', '0.1'],
        env=toy_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    pointer = work_dir / 'last_checkpoint'
    deadline = time.monotonic() + 90
    while not pointer.exists():
        assert proc.poll() is None, 'the run ended before its first save'
        assert time.monotonic() < deadline, 'no checkpoint within 90 s'
        time.sleep(0.05)
    time.sleep(0.5)  # a few iterations into epoch 2
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert pointer.read_text() == str(work_dir / 'epoch_1.pth'), (
        'killed after epoch 1 ended; the machine is too slow for this test')
    assert not (work_dir / 'final_rank0.pt').exists()

    # the rerun in this process: a fresh Runner that reads only the disk
    resumed = train_in_process(work_dir, resume=True)
    log = resumed[2]
    # resumed, not retrained from scratch (which would also match)
    assert 'resumed epoch: 1, iter: 16' in log
    assert 'Epoch(train) [1]' not in log.split('resumed epoch')[1]
    assert_same_run(resumed, reference)


@pytest.mark.parametrize('reseed', [True, False])
def test_resumed_run_repeats_random_numbers_only_with_reseeding(
        tmp_path, reseed):
    """In-process: train 3 epochs; resume a second run from epoch 1."""

    def train(work_dir, **kwargs):
        cfg = build_cfg(
            str(tmp_path / work_dir), reseed=reseed,
            experiment_name=f'reseed_{reseed}_{work_dir}', **kwargs)
        if 'resume' in kwargs:
            cfg.load_from = str(tmp_path / 'full' / 'epoch_1.pth')
        model = Runner.from_cfg(cfg).train()
        return {k: v.clone() for k, v in model.state_dict().items()}

    full = train('full')
    resumed = train('resumed', resume=True)
    same = all(torch.equal(full[k], resumed[k]) for k in full)
    # without reseeding, dropout draws other masks after the resume
    assert same == reseed


def _kill_after_first_checkpoint(command: list, work_dir: Path,
                                 delay: float) -> None:
    """Starts ``command``, SIGKILLs it ``delay`` s after the first
    ``last_checkpoint`` appears in ``work_dir``."""
    proc = subprocess.Popen(command, env=toy_env(),
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    pointer = work_dir / 'last_checkpoint'
    deadline = time.monotonic() + 300
    while not pointer.exists():
        assert proc.poll() is None, 'the run ended before its first save'
        assert time.monotonic() < deadline, 'no checkpoint within 300 s'
        time.sleep(0.05)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL


@pytest.mark.slow
def test_detector_kill_mid_epoch_then_resume_matches_uninterrupted(
        tmp_path):
    """The same with the demo Cascade Mask R-CNN through tools/train.py.

    4 toy images, batch 2: 2 iterations per epoch, 3 epochs, a checkpoint
    per epoch, COCO evaluation at the end. Random flips, RPN and RoI
    sampling draw random numbers. About 3 minutes on 2 busy cores.
    """
    from convnext_dense.datasets import generate_toy_coco
    generate_toy_coco(tmp_path / 'data', num_train=4, num_val=2,
                      image_size=64, seed=0)
    config = write_detector_config(tmp_path / 'demo.py', tmp_path / 'data')
    train = [sys.executable, os.path.join(REPO_ROOT, 'tools', 'train.py'),
             str(config), '--work-dir']

    def run(work_dir, *args):
        result = subprocess.run(
            train + [str(work_dir), *args], env=toy_env(),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            timeout=600)
        assert result.returncode == 0, result.stdout[-3000:]
        return result.stdout

    reference = run(tmp_path / 'reference')
    killed = tmp_path / 'killed'
    # an iteration takes ~3 s: the kill lands inside epoch 2
    _kill_after_first_checkpoint(train + [str(killed)], killed, delay=1.5)
    assert (killed / 'last_checkpoint').read_text() == str(
        killed / 'epoch_1.pth')
    resumed = run(killed, '--resume')
    assert 'resumed epoch: 1, iter: 2' in resumed

    allow_mmengine_checkpoint_types()
    final = torch.load(killed / 'epoch_3.pth')['state_dict']
    expected = torch.load(tmp_path / 'reference' / 'epoch_3.pth')['state_dict']
    assert final.keys() == expected.keys()
    for name in expected:
        assert torch.equal(final[name], expected[name]), name

    def metrics(log):
        return re.findall(r'(bbox|segm)_mAP_copypaste: (.*)', log)

    assert metrics(resumed) == metrics(reference) != []
