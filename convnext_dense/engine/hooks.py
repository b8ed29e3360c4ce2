"""Hooks that keep long training runs recoverable.

- :class:`AtomicCheckpointHook`: mmengine's ``CheckpointHook`` whose files,
  ``last_checkpoint`` pointer and pruning of old checkpoints are ordered so
  that a kill at any moment leaves a resumable work directory.
- :class:`NonFiniteLossHook`: stops training at the first NaN/inf loss,
  naming the iteration and every loss term, before the poisoned weights can
  be written to a checkpoint.
- :class:`ResumableRandomnessHook`: reseeds the random number generators
  from (seed, epoch) and (seed, iteration), so that a resumed run draws the
  same random numbers (drop path, RoI sampling, flips) as an uninterrupted
  one.
- :class:`StrictLoadHook`: refuses ``load_from`` weights that do not fit
  the model (``tools/test.py``; ``--allow-partial`` only warns).

All are registered in the ``convnext_dense`` scope; configs select them
through ``configs/_base_/reliability.py``.
"""
from __future__ import annotations

import logging
import math
import os
import os.path as osp
import random
import re
from typing import Optional

import numpy as np
import torch
from mmengine.dist import all_reduce, get_rank, get_world_size, \
    is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.runner import find_latest_checkpoint

from ..checkpoint.mismatch import (CheckpointMismatchError,
                                   check_checkpoint_fits,
                                   describe_mismatch, state_dict_of,
                                   unwrap_model)
from ..registry import HOOKS
from .atomic_save import atomic_write, remove_partial_files

DATA_BATCH = Optional[dict]


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` that never leaves a half-written resume point.

    It differs from mmengine's hook in three ways; everything else (its
    arguments, file names, best-checkpoint logic) is inherited:

    1. Checkpoint files are written through the ``atomic_local`` file
       backend (temporary file, fsync, rename) unless ``backend_args`` or an
       ``out_dir`` with a URI prefix (``s3://`` ...) chooses another one.
    2. ``work_dir/last_checkpoint``, the file ``--resume`` reads, is replaced
       atomically and only after the checkpoint it names is complete.
    3. With ``max_keep_ckpts``, outdated checkpoints are deleted only after
       the new checkpoint and the pointer are in place; mmengine deletes
       them first, so a crash during the save could leave ``last_checkpoint``
       naming a file that no longer exists.

    A resumed training that had already finished (stopped during its final
    validation, after the last checkpoint) runs that validation again,
    saying so; mmengine would end at once, without metrics or a word.

    It also refuses to resume from a checkpoint of another model: mmengine
    loads mismatching weights with a warning only and then fails on the
    optimizer state ("loaded state dict contains a parameter group that
    doesn't match the size of optimizer's group"). ``load_from`` without
    ``resume`` (fine-tuning, where a different head is normal) is not
    checked.

    Leftover ``.*.partial`` files of interrupted writes are deleted when
    training starts. The checkpoints it writes can be resumed from under
    ``weights_only=True`` because importing ``convnext_dense.engine``
    allow-lists their types (``allow_mmengine_checkpoint_types``).

    Args:
        backend_args (dict, optional): As in ``CheckpointHook``. Defaults to
            None: ``dict(backend='atomic_local')`` for local directories.
        **kwargs: The other arguments of ``CheckpointHook``.
    """

    def __init__(self, backend_args: Optional[dict] = None, **kwargs) -> None:
        out_dir = kwargs.get('out_dir')
        local = out_dir is None or '://' not in str(out_dir)
        if (backend_args is None and kwargs.get('file_client_args') is None
                and local):
            backend_args = dict(backend='atomic_local')
        super().__init__(backend_args=backend_args, **kwargs)

    def before_train(self, runner) -> None:
        super().before_train(runner)
        self._validate_finished = self._resumed_finished_training(runner)
        if not is_main_process():
            return
        self._warn_overwrites(runner)
        for dirname in {self.out_dir, runner.work_dir}:
            if osp.isdir(dirname):
                for path in remove_partial_files(dirname):
                    print_log(
                        f'Removed {path}, left by an interrupted save.',
                        logger='current')

    def _resumed_finished_training(self, runner) -> bool:
        """Whether this run resumed a training that had already run all its
        iterations; says so. True if its final validation is to be run
        again: the checkpoint is written before that validation, so a run
        stopped during it left no metrics, and its resume would end at once
        without any."""
        loop = runner.train_loop
        if not (runner.cfg.get('resume') and loop.iter > 0
                and loop.iter >= loop.max_iters):
            return False
        where = (f'epoch {loop.epoch} of {loop.max_epochs}' if self.by_epoch
                 else f'iteration {loop.iter} of {loop.max_iters}')
        validate = (runner.val_loop is not None
                    and getattr(loop, 'val_begin', 1) <= (
                        loop.epoch if self.by_epoch else loop.iter))
        print_log(
            f"resumed from {runner.cfg.get('load_from')}: that training had "
            f'finished ({where}); nothing left to train. ' +
            ('Running its final validation again (the previous run may '
             'have stopped during it).' if validate else 'Nothing to do.'),
            logger='current', level=logging.WARNING)
        return validate

    def after_train(self, runner) -> None:
        super().after_train(runner)
        if getattr(self, '_validate_finished', False):
            self._validate_finished = False
            runner.val_loop.run()

    def _warn_overwrites(self, runner) -> None:
        """Warn once about checkpoints of an earlier run that this one will
        overwrite (a training started without --resume in a used work dir,
        or resumed from an earlier checkpoint than the latest)."""
        if not osp.isdir(self.out_dir):
            return
        step = runner.epoch if self.by_epoch else runner.iter
        pattern = re.compile(
            re.escape(self.filename_tmpl).replace(r'\{\}', r'(\d+)') + '$')
        later = sorted(
            (int(match.group(1)), name) for name in os.listdir(self.out_dir)
            for match in [pattern.match(name)]
            if match and int(match.group(1)) > step)
        if later:
            names = ', '.join(name for _, name in later[:5]) + (
                f' (+{len(later) - 5} more)' if len(later) > 5 else '')
            if runner.cfg.get('resume'):  # from an earlier checkpoint
                advice = (
                    f"This run resumes from {runner.cfg.get('load_from')}, "
                    f'an earlier one. To continue from the newest instead, '
                    f'resume from {later[-1][1]}; to keep them, use another '
                    '--work-dir.')
            else:
                advice = ('To continue that training instead, use --resume; '
                          'to keep them, use another --work-dir.')
            print_log(
                f'{self.out_dir} already holds {len(later)} checkpoint(s) '
                f'this training will overwrite as it reaches them: {names}. '
                + advice, logger='current', level=logging.WARNING)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        # called before the weights are copied into the model
        if not runner.cfg.get('resume'):
            return
        report = describe_mismatch(
            unwrap_model(runner.model).state_dict(),
            state_dict_of(checkpoint))
        if not report:
            return
        path = runner.cfg.get('load_from') or find_latest_checkpoint(
            runner.work_dir)
        raise CheckpointMismatchError(
            f'cannot resume from {path}: it holds another model than the '
            f'config builds {report}. Resume with the config the checkpoint '
            'was trained with; to start a new training from its weights, '
            'use load_from without resume.')

    def _save_checkpoint_with_step(self, runner, step: int,
                                   meta: dict) -> None:
        # the same bookkeeping as CheckpointHook, but outdated files are only
        # collected here and deleted at the end
        outdated = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and
                                            self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                # keep_ckpt_ids is a deque of maxlen max_keep_ckpts: the
                # append below drops its oldest entry
                outdated.append(self.keep_ckpt_ids[0])
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids',
                                           list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir,
                                                     ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)

        # sharded (model-parallel) saves gather on every rank; only rank 0
        # owns the pointer and the pruning
        if not is_main_process():
            return
        atomic_write(
            str(self.last_ckpt).encode('utf-8'),
            osp.join(runner.work_dir, 'last_checkpoint'))
        for old_step in outdated:
            path = self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(old_step))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):
                # checkpoints saved by deepspeed are directories
                self.file_backend.rmtree(path)


class NonFiniteLossError(RuntimeError):
    """Raised by :class:`NonFiniteLossHook`."""


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stops training when the total loss or any loss term is NaN or inf.

    The check runs in ``after_train_iter`` at ``VERY_HIGH`` priority, before
    the ``CheckpointHook`` (``VERY_LOW``) of the same iteration and before any
    later epoch-end save, so the weights that the non-finite gradients have
    already updated are never written to a checkpoint: the last checkpoint on
    disk stays the last good one.

    The error names the iteration as mmengine's log does (1-based), the
    epoch, every loss term with its value, and the last checkpoint.

    In distributed training the ranks agree through an all-reduce of one
    flag, so all of them stop in the same iteration instead of the healthy
    ones waiting forever in the next gradient all-reduce.

    Args:
        loss_key (str): Outputs whose name contains this are losses, the same
            rule ``BaseModel.parse_losses`` uses to sum them. Defaults to
            'loss'.
    """

    priority = 'VERY_HIGH'

    def __init__(self, loss_key: str = 'loss') -> None:
        self.loss_key = loss_key

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: DATA_BATCH = None,
                         outputs: Optional[dict] = None) -> None:
        losses = {
            name: float(value.detach().float().mean()) if isinstance(
                value, torch.Tensor) else float(value)
            for name, value in (outputs or {}).items()
            if self.loss_key in name
        }
        bad = [name for name, value in losses.items()
               if not math.isfinite(value)]

        ranks_bad = 1 if bad else 0
        if get_world_size() > 1:
            flag = torch.tensor([ranks_bad], dtype=torch.int64)
            all_reduce(flag)
            ranks_bad = int(flag.item())
        if not ranks_bad:
            return

        terms = ', '.join(f'{name}={value:.6g}'
                          for name, value in losses.items())
        where = (f'iteration {runner.iter + 1} (epoch {runner.epoch + 1}, '
                 f'batch {batch_idx + 1})')
        last = runner.message_hub.get_info('last_ckpt')
        resume_hint = (f'The last checkpoint, {last}, was written before '
                       'this iteration.' if last else
                       'No checkpoint had been written yet.')
        if bad:
            message = (f'Non-finite loss at {where} on rank {get_rank()}: '
                       f'{terms}. Non-finite: {", ".join(bad)}.')
        else:
            message = (f'Non-finite loss on {ranks_bad} other rank(s) at '
                       f'{where}; this rank (rank {get_rank()}) had {terms}.')
        raise NonFiniteLossError(
            f'{message} Training stopped before saving this state. '
            f'{resume_hint} Lower the learning rate, enable gradient '
            'clipping, or check the data of this batch.')


@HOOKS.register_module()
class ResumableRandomnessHook(Hook):
    """Reseeds python's, numpy's and torch's generators at every step.

    mmengine seeds the generators once, when the Runner is built, and does
    not store their states in checkpoints. A resumed run therefore draws
    different random numbers than the uninterrupted run did from that point
    on: other drop-path masks, other sampled RoIs, other flips. This hook
    makes the random numbers a function of the position in training instead
    of the history:

    - before each training epoch, from ``(seed, 0, epoch)``: the first batch
      of an epoch is loaded (and, with ``num_workers=0``, augmented) in the
      same state in both runs;
    - before each training iteration, from ``(seed, 1, iteration)``: the
      forward and backward pass draw the same numbers.

    Seeds are derived with ``numpy.random.SeedSequence``, so they are
    unrelated to the ``seed + epoch`` that mmengine's ``DefaultSampler``
    shuffles with. ``runner.seed`` already includes the rank when
    ``randomness.diff_rank_seed`` is set, so ranks differ exactly when they
    would without this hook.

    What it cannot reach: dataloader worker processes. With
    ``num_workers > 0`` mmengine's ``worker_init_fn`` reseeds each worker when
    it starts, so non-persistent workers (started every epoch) and the
    iteration loop (which replays the dataloader up to the resumed
    iteration) are reproducible, but ``persistent_workers=True`` in an
    epoch-based loop is not: after a resume the workers start over.
    """

    priority = 'VERY_HIGH'

    @staticmethod
    def _reseed(seed: int, kind: int, step: int) -> None:
        # two 32-bit words: numpy takes one, torch 64 bits
        words = np.random.SeedSequence([seed, kind, step]).generate_state(2)
        random.seed(int(words[0]))
        np.random.seed(int(words[0]))
        torch.manual_seed((int(words[1]) << 32) | int(words[0]))

    def before_train_epoch(self, runner) -> None:
        self._reseed(runner.seed, 0, runner.epoch)

    def before_train_iter(self,
                          runner,
                          batch_idx: int,
                          data_batch: DATA_BATCH = None) -> None:
        self._reseed(runner.seed, 1, runner.iter)


@HOOKS.register_module()
class StrictLoadHook(Hook):
    """Refuses to test or fine-tune with a checkpoint that does not fit.

    mmengine's ``Runner.load_checkpoint`` (``load_from`` without
    ``resume``) loads with ``strict=False``: missing, unexpected and
    mis-shaped tensors only produce warnings, and the run goes on with
    those weights as initialised. This hook runs in its
    ``after_load_checkpoint``, before any weight is copied, and raises
    :class:`~convnext_dense.checkpoint.mismatch.CheckpointMismatchError`
    with the same report as ``tools/infer.py``. ``tools/test.py`` adds it;
    its ``--allow-partial`` logs the report as a warning instead.

    Args:
        allow_partial (bool): Warn instead of raising. Defaults to False.
    """

    priority = 'VERY_HIGH'

    def __init__(self, allow_partial: bool = False) -> None:
        self.allow_partial = allow_partial

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if runner.cfg.get('resume'):  # AtomicCheckpointHook checks those
            return
        try:
            check_checkpoint_fits(
                runner.model, checkpoint, runner.cfg.get('load_from'),
                hint='(tools/test.py --allow-partial loads the tensors that '
                'fit and leaves the others as initialised.)')
        except CheckpointMismatchError as err:
            if not self.allow_partial:
                raise
            print_log(f'--allow-partial: {err}', logger='current',
                      level=logging.WARNING)
