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


SCRIPTS = {  # script: (arguments it needs, its usage line)
    'dist_train.sh': (2, 'usage: bash tools/dist_train.sh CONFIG GPUS '
                      '[train.py options ...]'),
    'dist_test.sh': (3, 'usage: bash tools/dist_test.sh CONFIG CHECKPOINT '
                     'GPUS [test.py options ...]'),
    'dist_launch.sh': (2, 'usage: bash tools/dist_launch.sh TOOL GPUS '
                       '[TOOL arguments ...]'),
    'slurm_train.sh': (4, 'usage: GPUS=16 bash tools/slurm_train.sh '
                       'PARTITION JOB_NAME CONFIG WORK_DIR ...'),
}


@pytest.mark.parametrize('script', sorted(SCRIPTS))
def test_help_and_missing_arguments(script) -> None:
    path = osp.join(REPO, 'tools', script)
    helped = subprocess.run(['bash', path, '--help'], capture_output=True,
                            text=True)
    assert helped.returncode == 0
    assert f'bash tools/{script}' in helped.stdout
    for given in range(SCRIPTS[script][0]):
        done = subprocess.run(['bash', path, *['x'] * given],
                              capture_output=True, text=True)
        # not bash's "$1: unbound variable"
        assert done.returncode == 2
        assert done.stderr.splitlines()[0] == SCRIPTS[script][1]


def test_interpreter_choice(tmp_path) -> None:
    """PYTHON, else the repository's .venv/bin/python, else python3; never
    a bare ``python`` from PATH."""
    root = tmp_path / 'repo'
    (root / 'tools').mkdir(parents=True)
    for name in ('dist_launch.sh', 'launch_common.sh'):
        (root / 'tools' / name).write_text(
            open(osp.join(REPO, 'tools', name)).read())
    stub_dir = tmp_path / 'bin'
    stub_dir.mkdir()
    for name in ('python', 'python3'):
        (stub_dir / name).write_text(f'#!/bin/sh\necho {name}\n')
        (stub_dir / name).chmod(0o755)
    env = dict(os.environ, PATH=f'{stub_dir}:/usr/bin:/bin')
    env.pop('PYTHON', None)

    def run() -> str:
        return subprocess.run(
            ['bash', str(root / 'tools' / 'dist_launch.sh'), 'train.py', '1'],
            env=env, capture_output=True, text=True, check=True).stdout
    assert run() == 'python3\n'
    venv = root / '.venv' / 'bin'
    venv.mkdir(parents=True)
    (venv / 'python').write_text('#!/bin/sh\necho venv\n')
    (venv / 'python').chmod(0o755)
    assert run() == 'venv\n'
    env['PYTHON'] = str(stub_dir / 'python')
    assert run() == 'python\n'


@pytest.mark.slow
def test_two_process_cpu_training_without_torch_on_path(tmp_path) -> None:
    """bash tools/dist_train.sh with PATH=/usr/bin:/bin (no venv activated,
    no torch on PATH's python): the repository's .venv runs it."""
    pytest.importorskip('mmdet')
    import sys
    from engine.toy_runner import toy_env, write_detector_config
    from convnext_dense.toy_data import generate_toy_coco
    from e2e.test_distributed import free_port

    # a checkout whose .venv is this test's environment
    root = tmp_path / 'repo'
    root.mkdir()
    for name in ('tools', 'configs', 'convnext_dense'):
        (root / name).symlink_to(osp.join(REPO, name))
    if sys.prefix != sys.base_prefix:  # a venv: link all of it
        (root / '.venv').symlink_to(sys.prefix)
    else:
        (root / '.venv' / 'bin').mkdir(parents=True)
        (root / '.venv' / 'bin' / 'python').symlink_to(sys.executable)
    generate_toy_coco(tmp_path / 'data', num_train=4, num_val=2,
                      image_size=64, seed=0)
    config = write_detector_config(tmp_path / 'demo.py', tmp_path / 'data',
                                   max_epochs=1)
    env = toy_env()
    env.update(PATH='/usr/bin:/bin', PORT=str(free_port()))
    env.pop('PYTHON', None)
    done = subprocess.run(
        ['bash', str(root / 'tools' / 'dist_train.sh'), str(config), '2',
         '--work-dir', str(tmp_path / 'work_dir')],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:]
    assert 'rank 0 of 2 runs on the CPU with the gloo backend' in done.stdout
    assert 'Epoch(train) [1][1/1]' in done.stdout
    assert (tmp_path / 'work_dir' / 'epoch_1.pth').is_file()
