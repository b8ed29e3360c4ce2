"""A small, deterministic mmengine training run for the reliability tests.

Run as a script (the kill-and-resume and distributed tests start it as a
subprocess, the latter through ``torchrun``) or import :func:`build_cfg` to
run it in-process. It trains a two-layer regressor with BatchNorm (so buffers
as well as parameters must survive a resume) and dropout (so the random
numbers must continue as in an uninterrupted run) by SGD with momentum (so
the optimizer state must survive too) and a step learning-rate schedule (and
the scheduler state), validates every epoch with a mean-squared-error metric
and saves a checkpoint every epoch through the hooks of
``configs/_base_/reliability.py``.

Randomness: the sampler's shuffle, which mmengine's ``DefaultSampler``
derives from ``seed + epoch``, and dropout, which draws from torch's global
generator; ``ResumableRandomnessHook`` reseeds that from (seed, iteration).
Data loading is in the main process (``num_workers=0``) and all ops are
deterministic on the CPU, so a resumed run can match an uninterrupted one
bitwise.

Usage::

    python tests/engine/toy_runner.py WORK_DIR [--resume] [--max-epochs 3]
        [--iter-sleep 0.0] [--nan-at-iter K] [--launcher pytorch]

At the end it writes ``WORK_DIR/final_rank{R}.pt`` (the model's state dict)
and ``WORK_DIR/final_metrics.json`` (the last validation metrics, rank 0).
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.dist import get_rank
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.logging import MessageHub
from mmengine.model import BaseModel
from mmengine.registry import DATASETS, HOOKS, METRICS, MODELS
from mmengine.runner import Runner
from torch.utils.data import Dataset

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RELIABILITY_BASE = osp.join(REPO_ROOT, 'configs', '_base_', 'reliability.py')

NUM_FEATURES = 8


@DATASETS.register_module(force=True)
class ToyRegressionSet(Dataset):
    """``num_samples`` fixed samples ``y = x @ w + 0.1 * noise``.

    ``w`` is the same for every instance; ``x`` and the noise are drawn from
    ``np.random.default_rng(data_seed)``, independent of the training seed,
    so a train and a val set differ only in ``data_seed``.
    """

    metainfo = dict(task='toy regression')

    def __init__(self, num_samples: int, data_seed: int = 0) -> None:
        # unit-variance targets
        w = np.random.default_rng(1234).normal(size=(NUM_FEATURES, 1))
        w = (w / np.sqrt(NUM_FEATURES)).astype(np.float32)
        rng = np.random.default_rng(data_seed)
        x = rng.normal(size=(num_samples, NUM_FEATURES)).astype(np.float32)
        noise = rng.normal(size=(num_samples, 1)).astype(np.float32)
        self.inputs = torch.from_numpy(x)
        self.targets = torch.from_numpy(x @ w + 0.1 * noise)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> dict:
        return dict(inputs=self.inputs[index], targets=self.targets[index])


@MODELS.register_module(force=True)
class ToyRegressor(BaseModel):
    """Linear -> BatchNorm -> ReLU -> Dropout -> Linear, two loss terms.

    Dropout draws from torch's global generator in every training step, as
    drop path and RoI sampling do in the detectors.

    Args:
        dropout (float): Dropout probability. Defaults to 0.1.
        nan_at_iter (int, optional): From this training iteration on (0-based,
            as ``runner.iter``), ``loss_l1`` is NaN. Defaults to None (never).
    """

    def __init__(self,
                 dropout: float = 0.1,
                 nan_at_iter: Optional[int] = None) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(NUM_FEATURES, 16), nn.BatchNorm1d(16), nn.ReLU(),
            nn.Dropout(dropout), nn.Linear(16, 1))
        self.nan_at_iter = nan_at_iter

    def forward(self,
                inputs: torch.Tensor,
                targets: torch.Tensor,
                mode: str = 'tensor'):
        preds = self.net(inputs)  # (B, 1)
        if mode == 'loss':
            loss_l1 = 0.1 * (preds - targets).abs().mean()
            # the RuntimeInfoHook stores runner.iter before each iteration
            cur_iter = MessageHub.get_current_instance().get_info('iter')
            if self.nan_at_iter is not None and cur_iter >= self.nan_at_iter:
                loss_l1 = loss_l1 * float('nan')
            return dict(
                loss_mse=((preds - targets)**2).mean(), loss_l1=loss_l1)
        if mode == 'predict':
            return [
                dict(pred=p, target=t) for p, t in zip(preds, targets)
            ]
        return preds


@METRICS.register_module(force=True)
class ToyMSE(BaseMetric):
    """Mean squared error over the validation set."""

    def process(self, data_batch: dict, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            self.results.append(
                float((sample['pred'] - sample['target']).pow(2).sum()))

    def compute_metrics(self, results: list) -> dict:
        return dict(mse=sum(results) / len(results))


@HOOKS.register_module(force=True)
class ToyRecordHook(Hook):
    """Keeps the last validation metrics; sleeps after each iteration.

    The sleep gives the kill test a window in which training is certainly in
    the middle of an epoch.
    """

    def __init__(self, iter_sleep: float = 0.0) -> None:
        self.iter_sleep = iter_sleep
        self.last_metrics: dict = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        if self.iter_sleep:
            time.sleep(self.iter_sleep)

    def after_val_epoch(self, runner, metrics=None) -> None:
        self.last_metrics = dict(metrics or {})


# the (1-based) training iteration after which SelfKillHook kills the run
KILL_AT_ITER_ENV = 'TOY_KILL_AT_ITER'
# the training epoch whose validation SelfKillHook kills, at its 2nd batch
KILL_IN_VAL_ENV = 'TOY_KILL_IN_VAL_EPOCH'


@HOOKS.register_module(force=True)
class SelfKillHook(Hook):
    """SIGKILLs its own process after the iteration named by the
    ``TOY_KILL_AT_ITER`` environment variable, or during the validation
    after the epoch ``TOY_KILL_IN_VAL_EPOCH`` names (inert without them).

    A kill at a fixed point in training, however fast the machine: after the
    optimizer step of that iteration, before any later checkpoint.
    """

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None) -> None:
        kill_at = os.environ.get(KILL_AT_ITER_ENV)
        if kill_at is not None and runner.iter + 1 == int(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)

    def after_val_iter(self, runner, batch_idx, data_batch=None,
                       outputs=None) -> None:
        # in the middle of the validation that follows training epoch N
        kill_in = os.environ.get(KILL_IN_VAL_ENV)
        if kill_in is not None and runner.epoch == int(kill_in) \
                and batch_idx == 1:
            os.kill(os.getpid(), signal.SIGKILL)


@HOOKS.register_module(force=True)
class RankParamsHook(Hook):
    """Saves this rank's parameters to ``out_dir/params_rank{R}.pt`` at the
    end of training (mmengine's checkpoints come from rank 0 only)."""

    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir

    def after_train(self, runner) -> None:
        model = getattr(runner.model, 'module', runner.model)
        torch.save(
            {name: p.detach().clone()
             for name, p in model.named_parameters()},
            osp.join(self.out_dir, f'params_rank{get_rank()}.pt'))


def build_cfg(work_dir: str,
              max_epochs: int = 3,
              iter_sleep: float = 0.0,
              nan_at_iter: Optional[int] = None,
              launcher: str = 'none',
              resume: bool = False,
              reliable: bool = True,
              reseed: Optional[bool] = None,
              checkpoint: Optional[dict] = None,
              experiment_name: Optional[str] = None,
              num_samples: int = 64,
              batch_size: int = 4) -> Config:
    """The toy run as an mmengine config using the reliability base.

    Args:
        work_dir (str): Where checkpoints and logs go.
        max_epochs (int): Training epochs. Defaults to 3.
        iter_sleep (float): Seconds to sleep after each iteration.
            Defaults to 0.
        nan_at_iter (int, optional): See :class:`ToyRegressor`.
            Defaults to None.
        launcher (str): 'none' or 'pytorch' (torchrun). Defaults to 'none'.
        resume (bool): Resume from ``work_dir/last_checkpoint``.
            Defaults to False.
        reliable (bool): Use the hooks of ``configs/_base_/reliability.py``;
            False gives mmengine's stock ``CheckpointHook`` and no loss
            check, the behaviour the tests compare against. Defaults to True.
        reseed (bool, optional): Keep ``ResumableRandomnessHook`` (only
            with ``reliable``). Defaults to None: the same as ``reliable``.
        checkpoint (dict, optional): Overrides for the checkpoint hook.
            Defaults to None: one checkpoint per epoch.
        experiment_name (str, optional): Needed to run two runners in one
            process: mmengine names its MessageHub and logger instances by
            experiment name, which defaults to a timestamp in seconds.
            Defaults to None.
        num_samples (int): Training samples; 64 at batch size 4 is 16
            iterations per epoch. Defaults to 64.
        batch_size (int): Per-process batch size. Defaults to 4.

    Returns:
        Config: A config for :meth:`Runner.from_cfg`.
    """
    if reliable:
        reliability = Config.fromfile(RELIABILITY_BASE)
        checkpoint_hook = dict(type=reliability.atomic_checkpoint_hook)
        custom_hooks = [
            hook for hook in reliability.custom_hooks
            if reseed is not False or 'ResumableRandomness' not in hook.type
        ]
    else:
        checkpoint_hook, custom_hooks = dict(type='CheckpointHook'), []
    checkpoint_hook.update(interval=1, by_epoch=True)
    checkpoint_hook.update(checkpoint or {})
    custom_hooks.append(dict(type='ToyRecordHook', iter_sleep=iter_sleep))
    # inert unless TOY_KILL_AT_ITER is set in the run's environment
    custom_hooks.append(dict(type='SelfKillHook'))
    cfg = dict(
        model=dict(type='ToyRegressor', nan_at_iter=nan_at_iter),
        work_dir=work_dir,
        train_dataloader=dict(
            dataset=dict(type='ToyRegressionSet', num_samples=num_samples),
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
            batch_size=batch_size,
            num_workers=0),
        val_dataloader=dict(
            dataset=dict(type='ToyRegressionSet', num_samples=32, data_seed=1),
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
            batch_size=8,
            num_workers=0),
        val_evaluator=dict(type='ToyMSE'),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1),
        val_cfg=dict(),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.02, momentum=0.9)),
        # milestone in the middle, so the scheduler state matters
        param_scheduler=dict(
            type='MultiStepLR', by_epoch=True, milestones=[2], gamma=0.1),
        default_hooks=dict(
            checkpoint=checkpoint_hook,
            logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=custom_hooks,
        randomness=dict(seed=2024, deterministic=True),
        launcher=launcher,
        resume=resume)
    if experiment_name is not None:
        cfg['experiment_name'] = experiment_name
    return Config(cfg)


def die_while_writing(name_part: str,
                      occurrence: int = 1,
                      exit_code: int = 3) -> None:
    """Makes this process exit half-way through writing a file.

    Afterwards, the ``occurrence``-th file opened for writing whose name
    contains ``name_part`` receives half of the data of its first write,
    flushed to disk; then the process ends with
    ends the process with ``os._exit(exit_code)``: no ``finally`` block, no
    cleanup, as after a SIGKILL or a power cut. Both ways files get opened
    are covered: ``open`` (mmengine's ``LocalBackend``, the stock
    ``last_checkpoint`` write) and ``os.fdopen`` (``atomic_write``, whose
    temporary file is named after the destination).

    Args:
        name_part (str): e.g. 'epoch_2.pth' or 'last_checkpoint'.
        occurrence (int): Which opening of such a file to break (1-based).
            Defaults to 1.
        exit_code (int): The exit status. Defaults to 3.
    """
    import builtins
    real_open, real_fdopen = builtins.open, os.fdopen

    class HalfWriter:

        def __init__(self, file):
            self._file = file

        def write(self, data):
            self._file.write(data[:len(data) // 2])
            self._file.flush()
            os.fsync(self._file.fileno())
            os._exit(exit_code)

        def __enter__(self):
            return self

        def __exit__(self, *exc_info):
            return self._file.__exit__(*exc_info)

        def __getattr__(self, name):
            return getattr(self._file, name)

    seen = [0]

    def targeted(path, mode) -> bool:
        if ('w' in mode or 'a' in mode) and name_part in osp.basename(
                str(path)):
            seen[0] += 1
            return seen[0] == occurrence
        return False

    def open_(file, mode='r', *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        return HalfWriter(handle) if targeted(file, mode) else handle

    def fdopen_(fd, mode='r', *args, **kwargs):
        path = os.readlink(f'/proc/self/fd/{fd}')
        handle = real_fdopen(fd, mode, *args, **kwargs)
        return HalfWriter(handle) if targeted(path, mode) else handle

    builtins.open = open_
    os.fdopen = fdopen_


def write_detector_config(path: Union[str, Path],
                          data_root: Union[str, Path],
                          max_epochs: int = 3,
                          params_dir: Optional[str] = None,
                          channels_last: bool = False) -> Path:
    """A config for the demo detector on a toy COCO set, with the
    reliability hooks, deterministic, data loading in the main process.

    The demo inherits the reliability hooks from
    ``configs/_base_/detection_runtime.py``; ``custom_hooks`` is repeated
    here only because a list in a config replaces the base's list, and
    :class:`RankParamsHook` may be appended to it.

    Args:
        path (str or Path): Where to write the config.
        data_root (str or Path): A ``generate_toy_coco`` root.
        max_epochs (int): Epochs; one checkpoint each, validation at the
            end. Defaults to 3.
        params_dir (str, optional): Add :class:`RankParamsHook` writing
            there. Defaults to None.
        channels_last (bool): Add ``convnext_dense.ChannelsLastHook``.
            Defaults to False.

    Returns:
        Path: ``path``.
    """
    # the demo inherits the reliability hooks (detection_runtime.py)
    custom_hooks = [h.to_dict() for h in
                    Config.fromfile(RELIABILITY_BASE).custom_hooks]
    # inert unless TOY_KILL_AT_ITER is set in the run's environment
    custom_hooks.append(dict(type='SelfKillHook'))
    # a top-level name: toy_env() puts this directory on the path ('tests'
    # itself is taken by a package in site-packages)
    imports = ['convnext_dense', 'toy_runner']
    if params_dir is not None:
        custom_hooks.append(dict(type='RankParamsHook', out_dir=params_dir))
    if channels_last:
        custom_hooks.append(dict(type='convnext_dense.ChannelsLastHook'))
    root = f'{osp.abspath(data_root)}/'
    loader = dict(num_workers=0, persistent_workers=False,
                  dataset=dict(data_root=root))
    text = f"""_base_ = {osp.join(REPO_ROOT, 'configs', 'demo',
                                   'cascade_convnext_demo.py')!r}
custom_imports = dict(imports={imports!r}, allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(interval=1), logger=dict(interval=1))
custom_hooks = {custom_hooks!r}
randomness = dict(seed=0, deterministic=True)
train_dataloader = dict({loader!r}, batch_size=2)
val_dataloader = {loader!r}
test_dataloader = val_dataloader
val_evaluator = dict(ann_file={root + 'annotations/instances_val2017.json'!r})
test_evaluator = val_evaluator
train_cfg = dict(max_epochs={max_epochs}, val_interval={max_epochs})
"""
    Path(path).write_text(text)
    return Path(path)


SCRIPT = osp.abspath(__file__)


def run_toy(work_dir: Union[str, Path],
            *args: str,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs this script in a process of its own, one thread, and waits.

    Args:
        work_dir (str or Path): The run's work_dir.
        *args (str): More command-line arguments (see :func:`main`).
        timeout (float): Seconds. Defaults to 120.

    Returns:
        subprocess.CompletedProcess: With ``stdout`` (stderr appended).
    """
    done = run_python([SCRIPT, str(work_dir), *args], toy_env(), timeout)
    return subprocess.CompletedProcess(done.args, done.returncode,
                                       done.stdout + done.stderr)


def run_python(args: Sequence[str], env: dict,
               timeout: float) -> subprocess.CompletedProcess:
    """``python ARGS`` with ``env`` in the current folder, forked from the
    test process's preloaded interpreter (``helpers.forked``): a process
    of its own that skips the imports (a SIGKILL it sends itself ends
    it with ``returncode == -9``, as a fresh one)."""
    from helpers import forked
    return forked.run_python(list(args), os.getcwd(), env, timeout)


def toy_env() -> dict:
    """The environment for toy runs: one thread; the repository and this
    module (as ``toy_runner``) importable."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    env['PYTHONPATH'] = os.pathsep.join(
        [REPO_ROOT, osp.dirname(SCRIPT)] +
        [p for p in [env.get('PYTHONPATH')] if p])
    return env


def read_final(work_dir: Union[str, Path], rank: int = 0) -> tuple:
    """``(state_dict, metrics)`` that a finished run left in ``work_dir``."""
    state = torch.load(
        osp.join(work_dir, f'final_rank{rank}.pt'), map_location='cpu')
    with open(osp.join(work_dir, 'final_metrics.json')) as f:
        metrics = json.load(f)
    return state, metrics


def train_in_process(work_dir: Union[str, Path], **kwargs) -> tuple:
    """Trains the toy in this process (faster than :func:`run_toy`).

    Args:
        work_dir (str or Path): The run's work_dir.
        **kwargs: For :func:`build_cfg`.

    Returns:
        tuple: ``(state_dict, metrics, log)``: the final weights and
        buffers, the last validation metrics and the text of the run's log
        file.
    """
    import uuid
    cfg = build_cfg(str(work_dir), experiment_name=uuid.uuid4().hex,
                    **kwargs)
    # mmengine names the log directory after the second the run starts and
    # appends to a log file that exists: a run that starts in the same
    # second as an earlier one in this work_dir would read both logs.
    while osp.exists(osp.join(work_dir, time.strftime('%Y%m%d_%H%M%S'))):
        time.sleep(0.05)
    runner = Runner.from_cfg(cfg)
    model = runner.train()
    record = next(h for h in runner.hooks if isinstance(h, ToyRecordHook))
    log_file = runner.logger.handlers[-1].baseFilename
    with open(log_file) as f:
        log = f.read()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return state, record.last_metrics, log


_REFERENCE: dict = {}


def reference_run(root: Union[str, Path]) -> Path:
    """The uninterrupted 3-epoch run, trained once per test session.

    Args:
        root (str or Path): A directory for it, used on the first call.

    Returns:
        Path: Its work_dir (``final_rank0.pt``, ``final_metrics.json``,
        ``epoch_{1,2,3}.pth``).
    """
    if 'work_dir' not in _REFERENCE:
        work_dir = Path(root) / 'reference'
        result = run_toy(work_dir)
        assert result.returncode == 0, result.stdout[-3000:]
        _REFERENCE['work_dir'] = work_dir
    return _REFERENCE['work_dir']


def assert_same_run(run: Union[str, Path, tuple],
                    reference: Union[str, Path]) -> None:
    """Asserts bitwise-equal final weights and buffers and equal metrics.

    Args:
        run (str, Path or tuple): A finished run's work_dir, or the
            ``(state_dict, metrics, ...)`` of :func:`train_in_process`.
        reference (str or Path): The work_dir of the run to compare with.
    """
    state, metrics = run[:2] if isinstance(run, tuple) else read_final(run)
    ref_state, ref_metrics = read_final(reference)
    assert state.keys() == ref_state.keys()
    for name in ref_state:
        assert torch.equal(state[name], ref_state[name]), (
            f'{name} differs: max abs difference '
            f'{(state[name].double() - ref_state[name].double()).abs().max()}')
    assert metrics == ref_metrics


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work_dir')
    parser.add_argument('--resume', action='store_true')
    parser.add_argument('--max-epochs', type=int, default=3)
    parser.add_argument('--iter-sleep', type=float, default=0.0)
    parser.add_argument('--nan-at-iter', type=int, default=None)
    parser.add_argument('--launcher', default='none')
    parser.add_argument(
        '--stock', action='store_true',
        help="mmengine's CheckpointHook instead of the reliability hooks")
    parser.add_argument('--max-keep-ckpts', type=int, default=-1)
    parser.add_argument(
        '--die-while-writing', metavar='NAME[@N]',
        help='exit half-way through the N-th (default: first) write of a '
        'file whose name contains NAME (exit status 3)')
    args = parser.parse_args(argv)

    # run as a script from anywhere: the repository is not necessarily
    # installed into the environment
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)
    # registers the convnext_dense hooks and the checkpoint allow-list
    import convnext_dense.engine.hooks  # noqa: F401
    from convnext_dense.checkpoint.reader import \
        allow_mmengine_checkpoint_types
    allow_mmengine_checkpoint_types()

    torch.set_num_threads(1)
    cfg = build_cfg(
        args.work_dir,
        max_epochs=args.max_epochs,
        iter_sleep=args.iter_sleep,
        nan_at_iter=args.nan_at_iter,
        launcher=args.launcher,
        resume=args.resume,
        reliable=not args.stock,
        checkpoint=dict(max_keep_ckpts=args.max_keep_ckpts))
    # what tools/train.py does too: resume from the work dir's checkpoint;
    # CPU-only machines: gloo, no device ids
    from convnext_dense.engine.distributed import setup_cpu_distributed
    from convnext_dense.engine.resume import prepare_resume
    prepare_resume(cfg)
    setup_cpu_distributed(cfg)
    runner = Runner.from_cfg(cfg)
    if args.die_while_writing:
        name, _, occurrence = args.die_while_writing.partition('@')
        die_while_writing(name, int(occurrence or 1))
    from convnext_dense.engine.distributed import close_distributed
    finished = False
    try:
        model = runner.train()
        model = getattr(model, 'module', model)
        torch.save(model.state_dict(),
                   osp.join(args.work_dir, f'final_rank{get_rank()}.pt'))
        if get_rank() == 0:
            record = next(h for h in runner.hooks
                          if isinstance(h, ToyRecordHook))
            with open(osp.join(args.work_dir, 'final_metrics.json'),
                      'w') as f:
                json.dump(record.last_metrics, f)
        finished = True
    finally:
        close_distributed(wait=finished)  # as tools/train.py
    return 0


if __name__ == '__main__':
    sys.exit(main())
