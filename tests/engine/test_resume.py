"""Resuming under torch >= 2.6 (convnext_dense/checkpoint/reader.py).

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
- A copied or moved work dir resumes from its own checkpoint, not from the
  absolute path its ``last_checkpoint`` holds
  (convnext_dense/engine/resume.py).
"""
from __future__ import annotations

import os
import pickle
import re
import shutil
import signal
from pathlib import Path

import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint

from convnext_dense.checkpoint.reader import (
    allow_mmengine_checkpoint_types, mmengine_checkpoint_safe_globals)

from .toy_runner import (KILL_AT_ITER_ENV, KILL_IN_VAL_ENV, REPO_ROOT,
                         SCRIPT,
                         assert_same_run, build_cfg,
                         reference_run, run_python, run_toy, toy_env,
                         train_in_process,
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
        torch.load(checkpoint, map_location='cpu')  # what mmengine calls

    # the package's reader, which mmengine's loader now is, allow-lists
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
    HistoryBuffer()  # registers the default statistics, as a read does
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


@pytest.mark.slow
def test_kill_mid_epoch_then_resume_matches_uninterrupted(
        reference, tmp_path):
    work_dir = tmp_path / 'killed'
    # 16 iterations per epoch: SIGKILLed by its own hook after iteration 21,
    # the fifth of epoch 2, whatever the machine's speed
    proc = run_python([SCRIPT, str(work_dir)],
                      dict(toy_env(), **{KILL_AT_ITER_ENV: '21'}), 120)
    assert proc.returncode == -signal.SIGKILL
    pointer = work_dir / 'last_checkpoint'
    assert pointer.read_text() == str(work_dir / 'epoch_1.pth')
    assert not (work_dir / 'final_rank0.pt').exists()

    # the rerun in this process: a fresh Runner that reads only the disk
    resumed = train_in_process(work_dir, resume=True)
    log = resumed[2]
    # resumed, not retrained from scratch (which would also match)
    assert 'resumed epoch: 1, iter: 16' in log
    assert 'Epoch(train) [1]' not in log.split('resumed epoch')[1]
    assert_same_run(resumed, reference)


@pytest.mark.slow
def test_kill_during_validation_then_resume_matches_uninterrupted(
        reference, tmp_path):
    """SIGKILLed at the 2nd batch of the validation after epoch 2:
    epoch_2.pth was written before validation began, so the resume
    continues with epoch 3 and ends as the uninterrupted run; the
    interrupted validation of epoch 2 is not repeated."""
    work_dir = tmp_path / 'killed'
    proc = run_python([SCRIPT, str(work_dir)],
                      dict(toy_env(), **{KILL_IN_VAL_ENV: '2'}), 120)
    assert proc.returncode == -signal.SIGKILL
    assert (work_dir / 'last_checkpoint').read_text() == str(
        work_dir / 'epoch_2.pth')
    assert not list(work_dir.glob('.*.partial'))

    resumed = train_in_process(work_dir, resume=True)
    log = resumed[2]
    assert 'resumed epoch: 2, iter: 32' in log
    assert 'Epoch(val) [2]' not in log  # not repeated
    assert_same_run(resumed, reference)


@pytest.mark.slow
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


@pytest.mark.slow
def test_detector_kill_mid_epoch_then_resume_matches_uninterrupted(
        tmp_path):
    """The same with the demo Cascade Mask R-CNN through tools/train.py.

    4 toy images, batch 2: 2 iterations per epoch, 3 epochs, a checkpoint
    per epoch, COCO evaluation at the end. Random flips, RPN and RoI
    sampling draw random numbers. The kill comes from a hook of the run
    itself, at a fixed iteration, so the test does not depend on the
    machine's speed. About 30 s here.
    """
    from convnext_dense.toy_data import generate_toy_coco
    generate_toy_coco(tmp_path / 'data', num_train=4, num_val=2,
                      image_size=64, seed=0)
    config = write_detector_config(tmp_path / 'demo.py', tmp_path / 'data')
    train = [os.path.join(REPO_ROOT, 'tools', 'train.py'), str(config),
             '--work-dir']

    def run(work_dir, *args):
        result = run_python(train + [str(work_dir), *args], toy_env(), 600)
        log = result.stdout + result.stderr
        assert result.returncode == 0, log[-3000:]
        return log

    reference = run(tmp_path / 'reference')
    killed = tmp_path / 'killed'
    # SIGKILLed by its own hook after iteration 3 of 6: the first of epoch 2
    proc = run_python(train + [str(killed)],
                      dict(toy_env(), **{KILL_AT_ITER_ENV: '3'}), 600)
    assert proc.returncode == -signal.SIGKILL
    assert (killed / 'last_checkpoint').read_text() == str(
        killed / 'epoch_1.pth')
    assert not (killed / 'epoch_2.pth').exists()
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


def killed_run(work_dir: Path) -> Path:
    """A toy run SIGKILLed after iteration 21 (epoch 2): ``epoch_1.pth``
    and the pointer to it are on disk."""
    proc = run_python([SCRIPT, str(work_dir)],
                      dict(toy_env(), **{KILL_AT_ITER_ENV: '21'}), 120)
    assert proc.returncode == -signal.SIGKILL
    assert (work_dir / 'last_checkpoint').read_text() == str(
        work_dir / 'epoch_1.pth')
    return work_dir


@pytest.mark.slow
@pytest.mark.parametrize('how', ['copied', 'moved'])
def test_resume_in_copied_or_moved_work_dir(reference, tmp_path, how):
    """The pointer holds the absolute path of the original work dir. A copy
    resumed from the original's epoch_1.pth, whatever it held by then (here
    epoch 2's weights: a new training in the old place); a moved one
    failed. Both now resume from their own epoch_1.pth, with a warning."""
    original = killed_run(tmp_path / 'original')
    work_dir = tmp_path / how
    if how == 'copied':
        shutil.copytree(original, work_dir, symlinks=True)
        shutil.copyfile(reference / 'epoch_2.pth', original / 'epoch_1.pth')
    else:
        original.rename(work_dir)
    resumed = run_toy(work_dir, '--resume')
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert (f'{work_dir}/last_checkpoint names {original}/epoch_1.pth, '
            'outside this work dir (copied or moved since it was written?); '
            f'using {work_dir}/epoch_1.pth, the file of that name here'
            ) in resumed.stdout
    assert 'resumed epoch: 1, iter: 16' in resumed.stdout
    assert_same_run(work_dir, reference)


@pytest.mark.slow
def test_kill_during_final_validation_then_resume_validates(
        reference, tmp_path):
    """SIGKILLed in the validation after the last epoch: epoch_3.pth was
    written before it, so a resume found nothing to train and ended at
    once, exit 0, without metrics or a word. Now it says so and runs the
    missed validation, whose metrics equal the uninterrupted run's."""
    work_dir = tmp_path / 'killed'
    proc = run_python([SCRIPT, str(work_dir)],
                      dict(toy_env(), **{KILL_IN_VAL_ENV: '3'}), 120)
    assert proc.returncode == -signal.SIGKILL
    assert (work_dir / 'last_checkpoint').read_text() == str(
        work_dir / 'epoch_3.pth')

    resumed = run_toy(work_dir, '--resume')
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert (f'resumed from {work_dir}/epoch_3.pth: that training had '
            'finished (epoch 3 of 3); nothing left to train. Running its '
            'final validation again (the previous run may have stopped '
            'during it).') in resumed.stdout
    assert 'Epoch(val) [3][4/4]' in resumed.stdout
    assert_same_run(work_dir, reference)  # weights and metrics


@pytest.mark.slow
def test_resume_from_an_earlier_checkpoint_warns_without_use_resume(
        reference, tmp_path):
    """The overwrite warning told a --resume run to 'use --resume'."""
    work_dir = tmp_path / 'work'
    shutil.copytree(reference, work_dir)
    cfg = build_cfg(str(work_dir), resume=True,
                    experiment_name=f'earlier_{os.getpid()}')
    cfg.load_from = str(work_dir / 'epoch_1.pth')
    runner = Runner.from_cfg(cfg)
    runner.train()
    log = Path(runner.logger.handlers[-1].baseFilename).read_text()
    assert (f'{work_dir} already holds 2 checkpoint(s) this training will '
            'overwrite as it reaches them: epoch_2.pth, epoch_3.pth. This '
            f'run resumes from {work_dir}/epoch_1.pth, an earlier one. To '
            'continue from the newest instead, resume from epoch_3.pth; to '
            'keep them, use another --work-dir.') in log
    assert 'use --resume' not in log
