"""``NonFiniteLossHook`` (convnext_dense/engine/hooks.py).

The toy model's ``loss_l1`` turns NaN from a known iteration on. With the
hook, training stops in that iteration with an error naming it and every
loss term, and no checkpoint of that or any later iteration exists; the
control run without the hook shows that mmengine alone would train on and
save NaN weights.
"""
from __future__ import annotations

import os
from types import SimpleNamespace

import pytest
import torch
from mmengine.logging import MessageHub
from mmengine.runner import Runner

from convnext_dense.engine.hooks import NonFiniteLossError, NonFiniteLossHook
from convnext_dense.checkpoint.reader import allow_mmengine_checkpoint_types

from .toy_runner import build_cfg

NAN_AT_ITER = 5  # runner.iter, 0-based: mmengine logs it as iteration 6
# a checkpoint every 2 iterations: iter_2, iter_4 before the NaN, iter_6
# would hold the first poisoned weights
EVERY_2_ITERS = dict(by_epoch=False, interval=2)


def train_toy(work_dir: str, reliable: bool) -> Runner:
    runner = Runner.from_cfg(
        build_cfg(
            work_dir,
            max_epochs=1,
            nan_at_iter=NAN_AT_ITER,
            reliable=reliable,
            checkpoint=EVERY_2_ITERS,
            experiment_name=f'nonfinite_{reliable}_{os.getpid()}'))
    runner.train()
    return runner


def test_nan_loss_stops_before_poisoned_checkpoint(tmp_path):
    with pytest.raises(NonFiniteLossError) as info:
        train_toy(str(tmp_path), reliable=True)
    message = str(info.value)
    assert message.startswith(
        'Non-finite loss at iteration 6 (epoch 1, batch 6) on rank 0: loss=nan'
    )
    # every term, with its value; the finite one too
    assert 'loss_l1=nan' in message
    assert 'loss_mse=' in message and 'loss_mse=nan' not in message
    assert 'Non-finite: loss, loss_l1.' in message
    assert f'The last checkpoint, {tmp_path / "iter_4.pth"}' in message

    assert sorted(p.name for p in tmp_path.glob('*.pth')) == [
        'iter_2.pth', 'iter_4.pth'
    ]
    assert (tmp_path / 'last_checkpoint').read_text() == str(
        tmp_path / 'iter_4.pth')
    allow_mmengine_checkpoint_types()
    state = torch.load(tmp_path / 'iter_4.pth')['state_dict']
    assert all(torch.isfinite(v).all() for v in state.values())


def test_without_hook_nan_weights_are_saved(tmp_path):
    """The control: mmengine's stock hooks keep training on NaN."""
    train_toy(str(tmp_path), reliable=False)
    allow_mmengine_checkpoint_types()
    state = torch.load(tmp_path / 'iter_6.pth')['state_dict']
    assert torch.isnan(state['net.0.weight']).all()


def test_hook_ignores_non_loss_outputs_and_reports_inf():
    hook = NonFiniteLossHook()
    runner = SimpleNamespace(
        iter=9, epoch=0, message_hub=MessageHub.get_instance('nonfinite'))
    # 'acc' is logged, not summed into the loss: not checked
    hook.after_train_iter(
        runner, 9, outputs=dict(loss=torch.tensor(1.0),
                                acc=torch.tensor(float('nan'))))
    with pytest.raises(NonFiniteLossError,
                       match=r'iteration 10 .*loss=inf, s0\.loss_cls=inf, '
                       r's0\.loss_bbox=0\.5\. Non-finite: loss, s0\.loss_cls\.'
                       r'.*No checkpoint had been written yet'):
        hook.after_train_iter(
            runner, 9,
            outputs=dict(loss=torch.tensor(float('inf')),
                         **{'s0.loss_cls': torch.tensor(float('inf')),
                            's0.loss_bbox': torch.tensor(0.5)}))
