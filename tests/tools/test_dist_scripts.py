"""tools/dist_train.sh and tools/dist_test.sh: the torchrun command they run.

A stand-in interpreter prints what it is given, so the test sees the exact
torchrun command (rank and rendezvous options, the tool, its arguments with
``--launcher pytorch`` before the user's options) and the PYTHONPATH that
makes the repository importable, without starting any process group.
"""
from __future__ import annotations

import os
import os.path as osp
import subprocess

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.mark.parametrize('script, args, tool', [
    ('dist_train.sh', ['cfg.py', '8', '--amp'],
     ['train.py', 'cfg.py', '--launcher', 'pytorch', '--amp']),
    ('dist_test.sh', ['cfg.py', 'ck.pth', '4', '--tta'],
     ['test.py', 'cfg.py', 'ck.pth', '--launcher', 'pytorch', '--tta']),
])
def test_torchrun_command(tmp_path, script, args, tool) -> None:
    stub = tmp_path / 'python'
    stub.write_text('#!/bin/sh\necho "$PYTHONPATH"\necho "$@"\n')
    stub.chmod(0o755)
    env = dict(os.environ, PYTHON=str(stub), NNODES='2', NODE_RANK='1',
               MASTER_ADDR='10.0.0.1', PORT='1234')
    env.pop('PYTHONPATH', None)
    done = subprocess.run(['bash', osp.join(REPO, 'tools', script), *args],
                          cwd=tmp_path, env=env, capture_output=True,
                          text=True, check=True)
    pythonpath, command = done.stdout.splitlines()
    assert pythonpath == REPO
    gpus = args[-2]
    assert command.split() == [
        '-m', 'torch.distributed.run', '--nnodes=2', '--node_rank=1',
        '--master_addr=10.0.0.1', '--master_port=1234',
        f'--nproc_per_node={gpus}', osp.join(REPO, 'tools', tool[0]),
        *tool[1:]]
