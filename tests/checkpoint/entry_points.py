"""Every way a user hands the package a checkpoint, each run as its own
process with a time limit, for the tests of hostile and broken files.

:func:`run_entry_point` runs one entry point on the demo detector and a
two-image toy COCO set and returns the finished process (a
``subprocess.TimeoutExpired`` if it ran past ``timeout``).
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from helpers import forked

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / 'configs' / 'demo' / 'cascade_convnext_demo.py')

# the Python API: the reader, and the Inferencer of tools/infer.py
_API = '''
import sys
from convnext_dense.apis.inference import Inferencer
from convnext_dense.checkpoint import CHECKPOINT_ERRORS
try:
    Inferencer(sys.argv[1], sys.argv[2])
except CHECKPOINT_ERRORS as err:
    sys.exit(f'error: {err}')
'''
_READER = '''
import sys
from convnext_dense.checkpoint.backbone import read_checkpoint
from convnext_dense.checkpoint import CHECKPOINT_ERRORS
try:
    read_checkpoint(sys.argv[1])
except (*CHECKPOINT_ERRORS, ValueError) as err:
    sys.exit(f'error: {err}')
'''

ENTRY_POINTS = ('reader', 'api', 'test', 'infer', 'export', 'convert',
                'init_cfg', 'resume')


def toy_data(root: Path) -> Path:
    """A two-image toy COCO set under ``root``."""
    from convnext_dense.toy_data import generate_toy_coco
    generate_toy_coco(root, num_train=1, num_val=1, image_size=64, seed=0)
    return root


def _train_args(data: Path, work_dir: Path) -> list[str]:
    root = f'{data}/'
    return [
        'tools/train.py', DEMO, '--work-dir', str(work_dir), '--data-root',
        root, '--cfg-options', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0', 'val_dataloader.persistent_workers='
        'False', 'train_cfg.max_epochs=1'
    ]


def command(entry_point: str, checkpoint: Path, data: Path,
            tmp: Path) -> list[str]:
    """The command line (without the interpreter) of one entry point."""
    ckpt = str(checkpoint)
    image = str(next((data / 'val2017').iterdir()))
    return dict(
        reader=['-c', _READER, ckpt],
        api=['-c', _API, DEMO, ckpt],
        test=['tools/test.py', DEMO, ckpt, '--work-dir', str(tmp / 'test'),
              '--data-root', f'{data}/', '--cfg-options',
              'test_dataloader.num_workers=0',
              'test_dataloader.persistent_workers=False'],
        infer=['tools/infer.py', DEMO, ckpt, image, '--out-dir',
               str(tmp / 'infer'), '--device', 'cpu'],
        export=['tools/export_onnx.py', DEMO, ckpt, '--out',
                str(tmp / 'model.onnx')],
        convert=['tools/convert_checkpoint.py', ckpt,
                 str(tmp / 'converted.pth')],
        init_cfg=_train_args(data, tmp / 'init_cfg') + [
            'model.backbone.init_cfg._delete_=True',
            'model.backbone.init_cfg.type=Pretrained',
            f'model.backbone.init_cfg.checkpoint={ckpt}',
            '--cfg-new-keys'],  # the demo config's init_cfg is None
        resume=_train_args(data, tmp / 'resume')[:1] + [
            DEMO, '--resume', ckpt] + _train_args(data, tmp / 'resume')[2:],
    )[entry_point]


# the address space a process of the tools may take in the tests of files
# that ask for more: importing torch and mmdet maps ~4 GB here
MEMORY_LIMIT = 8 << 30


def run_python(args: list[str], timeout: float = 120,
               memory_limit: int | None = None
               ) -> subprocess.CompletedProcess:
    """``python ARGS`` in the repository, forked from the preloaded
    interpreter (:mod:`helpers.forked`): a process of its own.

    Args:
        memory_limit: Bytes of address space (``RLIMIT_AS``, as ``prlimit
            --as`` sets): allocations beyond it fail at once, so a loader
            that would take the machine's memory cannot. Defaults to none.
    """
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS='1')
    return forked.run_python(args, str(REPO), env, timeout, memory_limit)


def run_entry_point(entry_point: str, checkpoint: Path, data: Path,
                    tmp: Path, timeout: float = 120,
                    memory_limit: int | None = None
                    ) -> subprocess.CompletedProcess:
    """Run one entry point on ``checkpoint`` in a process of its own (see
    :func:`run_python`)."""
    tmp.mkdir(parents=True, exist_ok=True)
    return run_python(command(entry_point, checkpoint, data, tmp), timeout,
                      memory_limit)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The ``error: ...`` line a refused run ends with; asserts there is
    one and no traceback."""
    assert result.returncode != 0, result.stdout[-2000:]
    assert 'Traceback' not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('error: '), result.stderr[-3000:]
    return last


def loads_or_one_line_error(result: subprocess.CompletedProcess,
                            name: str) -> None:
    """Asserts the run ended well, or in one ``error:`` line naming
    ``name`` (and no traceback)."""
    if result.returncode != 0:
        assert name in one_line_error(result), result.stderr[-3000:]
