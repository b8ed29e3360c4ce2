"""Two-process data-parallel training on CPU (gloo), launched by torchrun.

Each rank trains the toy model of tests/engine/toy_runner.py through
mmengine's Runner with ``launcher='pytorch'`` (the launcher
tools/dist_train.sh uses) and saves its final state dict. DDP all-reduces
gradients, so the parameters must be bitwise identical across ranks, while
the BatchNorm statistics, which nothing synchronises, differ: each rank did
see different data.

mmengine 0.10.7's 'pytorch' launcher assumes GPUs (``torch.cuda.set_device``,
nccl, DDP ``device_ids=[LOCAL_RANK]``); the toy script calls
``convnext_dense.engine.distributed.setup_cpu_distributed`` first, as
tools/train.py does, which switches to gloo and CPU DDP.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
import torch

from convnext_dense.checkpoint.reader import allow_mmengine_checkpoint_types
from engine.toy_runner import (REPO_ROOT, SCRIPT, toy_env,
                               write_detector_config)

# long end-to-end runs: deselect with -m 'not slow'
pytestmark = pytest.mark.slow

NPROC = 2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_two_ranks_end_with_identical_parameters(tmp_path):
    command = [
        sys.executable, '-m', 'torch.distributed.run',
        f'--nproc_per_node={NPROC}', '--master_addr=127.0.0.1',
        f'--master_port={free_port()}', SCRIPT,
        str(tmp_path), '--launcher', 'pytorch', '--max-epochs', '1'
    ]
    result = subprocess.run(
        command, env=toy_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-4000:]
    assert 'Distributed launcher: pytorch' in result.stdout
    assert 'rank 0 of 2 runs on the CPU with the gloo backend' in result.stdout
    # 64 samples, 2 ranks, batch 4 per rank: 8 iterations per epoch
    assert 'Epoch(train) [1][8/8]' in result.stdout

    states = [
        torch.load(tmp_path / f'final_rank{rank}.pt')
        for rank in range(NPROC)
    ]
    allow_mmengine_checkpoint_types()
    last_checkpoint = torch.load(tmp_path / 'epoch_1.pth')
    params = [name for name in states[0]
              if 'running_' not in name and 'num_batches' not in name]
    assert params == ['net.0.weight', 'net.0.bias', 'net.1.weight',
                      'net.1.bias', 'net.4.weight', 'net.4.bias']
    for name in params:
        assert torch.equal(states[0][name], states[1][name]), name
        # the checkpoint of the last epoch holds the same weights
        assert torch.equal(states[0][name],
                           last_checkpoint['state_dict'][name])
    # BatchNorm statistics are per rank (no SyncBN): they differ, which
    # shows each rank saw different data
    assert not torch.equal(states[0]['net.1.running_mean'],
                           states[1]['net.1.running_mean'])


def train_detector_two_ranks(tmp_path, channels_last: bool = False
                             ) -> tuple[str, list[dict]]:
    """The demo Cascade Mask R-CNN through tools/train.py under torchrun.

    4 toy images, 2 ranks x batch 2: one iteration per epoch, 2 epochs.

    Returns:
        The workers' merged stdout and stderr (torchrun passes both
        through), and each rank's final parameters.
    """
    pytest.importorskip('mmdet')
    from convnext_dense.toy_data import generate_toy_coco
    generate_toy_coco(tmp_path / 'data', num_train=4, num_val=2,
                      image_size=64, seed=0)
    config = write_detector_config(
        tmp_path / 'demo.py', tmp_path / 'data', max_epochs=2,
        params_dir=str(tmp_path), channels_last=channels_last)
    command = [
        sys.executable, '-m', 'torch.distributed.run',
        f'--nproc_per_node={NPROC}', '--master_addr=127.0.0.1',
        f'--master_port={free_port()}',
        os.path.join(REPO_ROOT, 'tools', 'train.py'), str(config),
        '--work-dir', str(tmp_path / 'work_dir'), '--launcher', 'pytorch'
    ]
    result = subprocess.run(
        command, env=toy_env(), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:]
    assert 'runs on the CPU with the gloo backend' in result.stdout
    assert 'Epoch(train) [2][1/1]' in result.stdout
    params = [
        torch.load(tmp_path / f'params_rank{rank}.pt')
        for rank in range(NPROC)
    ]
    assert len(params[0]) > 100
    for name in params[0]:
        assert torch.equal(params[0][name], params[1][name]), name
    return result.stdout, params


def test_detector_two_ranks_identical_parameters(tmp_path):
    """SyncBN (in the heads) becomes BN on the CPU: BN weights are
    parameters and stay identical; only running statistics are per rank.
    No "Grad strides do not match bucket view strides" either: the
    backbone's depthwise gradients keep their weights' strides."""
    log, _ = train_detector_two_ranks(tmp_path)
    assert 'Grad strides do not match bucket view strides' not in log, (
        log[log.index('Grad strides'):][:1500])


def test_detector_channels_last_ddp_buckets_match_grads(tmp_path):
    """ChannelsLastHook under DDP: no gradient is copied between layouts.

    DDP lays out each parameter's slot in its gradient buckets (the bucket
    view) with the parameter's strides when it is built. Converted after
    that, the 4-D weights get channels-last gradients that the reducer must
    copy into NCHW views, and it warns "Grad strides do not match bucket
    view strides" (ConvNeXt#142, timm#2147) once per process; on a GPU the
    copy is paid every iteration until the buckets are rebuilt. The model
    must be channels-last before DDP wraps it, with identical parameters
    across ranks.
    """
    log, params = train_detector_two_ranks(tmp_path, channels_last=True)
    assert 'ChannelsLastHook: channels-last weights' in log, log[-4000:]
    assert 'Grad strides do not match bucket view strides' not in log, (
        log[log.index('Grad strides'):][:1500])
    # the weights trained channels-last: a 3x3 FPN convolution (its
    # channels-last strides differ from the NCHW ones)
    weight = params[0]['neck.fpn_convs.0.conv.weight']
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert not weight.is_contiguous()
