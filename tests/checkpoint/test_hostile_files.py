"""Small hostile checkpoints through every entry point, each under a time
limit: they load or are refused in one line, quickly.

- Shared references: pickle writes a shared object once and refers to it
  after, so four levels of 1000 references to one list are a 10 KB file
  and 1e12 paths. The type check walked every path and never finished
  (``tools/test.py`` and ``tools/infer.py`` hung); it enters each object
  once.
- Allocations: ``bytearray(N)`` (on torch's weights-only allow-list),
  ``numpy.ndarray(shape)`` and numpy's ``_reconstruct`` (on ours) allocate
  what a 1.5 KB file asks for; the loader took +2.4 GB, and a larger size
  ended in a bare ``MemoryError``. The file's pickle is replayed first and
  a file asking for more than it could hold is refused, naming it. These
  run under an address-space limit, so a regression cannot take the
  machine's memory.
- A stride-0 view of 1e12 elements from one float, written out by
  ``tools/convert_checkpoint.py``.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from .entry_points import (ENTRY_POINTS, MEMORY_LIMIT, REPO,
                           loads_or_one_line_error, one_line_error,
                           run_entry_point, run_python, toy_data)

READ_AND_COUNT = '''
import sys, time
from convnext_dense.checkpoint.reader import read_checkpoint_file
start = time.perf_counter()
checkpoint = read_checkpoint_file(sys.argv[1])
print(len(checkpoint['meta']['x']),
      'fast' if time.perf_counter() - start < 5 else 'slow')
'''


def shared_references(path: Path, levels: int = 4, width: int = 1000
                      ) -> Path:
    """``width ** levels`` paths to one list, in a few KB."""
    nested = [0]
    for _ in range(levels):
        nested = [nested] * width
    torch.save({'state_dict': {'w': torch.zeros(1)},
                'meta': {'x': nested}}, path)
    return path


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> Path:
    return toy_data(tmp_path_factory.mktemp('toy_coco'))


@pytest.mark.slow  # ~9 s of CPU in a child interpreter
def test_shared_references_are_walked_once(tmp_path: Path) -> None:
    path = shared_references(tmp_path / 'dag.pth')
    assert path.stat().st_size < 10_000
    # in a process of its own: a walk of every path would never return
    result = subprocess.run(
        [sys.executable, '-c', READ_AND_COUNT, str(path)], env=dict(
            os.environ, PYTHONPATH=str(REPO)), capture_output=True,
        text=True, timeout=60)
    assert result.stdout.split() == ['1000', 'fast'], result.stderr


@pytest.mark.slow
@pytest.mark.parametrize('entry_point', ENTRY_POINTS)
def test_shared_references_through_every_entry_point(
        entry_point: str, data: Path, tmp_path: Path) -> None:
    path = shared_references(tmp_path / 'dag.pth')
    # a process of the demo takes ~10 s here; the walk of every path
    # would take days
    result = run_entry_point(entry_point, path, data, tmp_path / 'run')
    # it loads (the reader), or is refused for what it is: not this
    # model's weights (a one-tensor state dict)
    loads_or_one_line_error(result, str(path))


# --- allocations ------------------------------------------------------------

ASKED = 2 * MEMORY_LIMIT  # more than the processes below may take


class _Calls:
    """Unpickles as ``function(*args)``."""

    def __init__(self, function, *args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


ALLOCATIONS = {
    'bytearray': lambda: _Calls(bytearray, ASKED),
    'ndarray': lambda: _Calls(np.ndarray, (ASKED // 8, )),
    'reconstruct': lambda: _Calls(np._core.multiarray._reconstruct,
                                  np.ndarray, (ASKED, ), b'b'),
}


def allocation(path: Path, kind: str, legacy: bool = False) -> Path:
    """A file of 0.4-1.8 KB whose loading asks for ``ASKED`` bytes."""
    torch.save({'state_dict': {'w': torch.zeros(1)},
                'meta': {'x': ALLOCATIONS[kind]()}}, path,
               _use_new_zipfile_serialization=not legacy)
    assert path.stat().st_size < 2000
    return path


READ_EACH = '''
import sys
from convnext_dense.checkpoint.reader import (CHECKPOINT_ERRORS,
                                                 read_checkpoint_file)
for path in sys.argv[1:]:
    try:
        read_checkpoint_file(path)
    except CHECKPOINT_ERRORS as err:
        print(f'error: {err}')
    else:
        print(f'loaded {path}')
'''


@pytest.mark.slow  # ~11 s of CPU in a child interpreter
def test_allocation_larger_than_the_file_is_refused(tmp_path: Path) -> None:
    paths = [allocation(tmp_path / f'{kind}_{legacy}.pth', kind, legacy)
             for kind in ALLOCATIONS for legacy in (False, True)]
    # one process for all: an interpreter with torch takes seconds to start
    result = run_python(['-c', READ_EACH, *map(str, paths)], timeout=120,
                        memory_limit=MEMORY_LIMIT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [
        f'error: {path} asks for more memory than a file of its size could '
        f'fill, so it was not loaded: its pickle asks for {ASKED + 4} bytes '
        f'of memory in a file of {path.stat().st_size}'  # (+ 'w')
        for path in paths]


def test_memory_error_names_the_file(tmp_path: Path, monkeypatch) -> None:
    from convnext_dense.checkpoint import reader as checkpoint_io

    def load(*args, **kwargs):
        raise MemoryError

    path = tmp_path / 'big.pth'
    torch.save({'w': torch.zeros(1)}, path)
    monkeypatch.setattr(checkpoint_io.torch, 'load', load)
    with pytest.raises(checkpoint_io.UnsafeCheckpointError,
                       match=f'^{path} needs more memory than this machine '
                       'has to load, so it was not loaded$'):
        checkpoint_io.read_checkpoint_file(str(path))


def test_checkpoints_within_their_size_pass_the_scan(tmp_path: Path) -> None:
    """Every storage counted once at its size, and no more: the scan of a
    real state dict (shared storages, views, several dtypes) asks for
    exactly the bytes of its tensor records."""
    import io
    import zipfile

    from convnext_dense.models import ConvNeXt
    from convnext_dense.checkpoint.reader import read_checkpoint_file
    from convnext_dense.checkpoint.preflight import _replay
    state = ConvNeXt(arch='test').state_dict()
    base = torch.arange(10.)
    state.update(half=torch.zeros(3, dtype=torch.half),
                 flags=torch.zeros(5, dtype=torch.bool),
                 view=base[2:5], same=base)
    for legacy in (False, True):
        path = tmp_path / f'{legacy}.pth'
        torch.save({'state_dict': state}, path,
                   _use_new_zipfile_serialization=not legacy)
        assert read_checkpoint_file(str(path))['state_dict'].keys() == \
            state.keys()
    with zipfile.ZipFile(tmp_path / 'False.pth') as archive:
        records = sum(info.file_size for info in archive.infolist()
                      if '/data/' in info.filename)
        scan = _replay(io.BytesIO(archive.read('False/data.pkl')))
    assert scan.requested == records


@pytest.mark.slow
@pytest.mark.parametrize('entry_point', ['resume', 'test', 'infer',
                                         'export', 'convert'])
def test_allocation_through_the_tools(entry_point: str, data: Path,
                                      tmp_path: Path) -> None:
    path = allocation(tmp_path / 'ndarray.pth', 'ndarray')
    result = run_entry_point(entry_point, path, data, tmp_path / 'run',
                             memory_limit=MEMORY_LIMIT)
    assert 'asks for more memory than a file of its size could fill' in \
        one_line_error(result)


@pytest.mark.slow  # ~11 s of CPU in a child interpreter
def test_convert_refuses_a_view_larger_than_its_storage(
        tmp_path: Path) -> None:
    from convnext_dense.models import ConvNeXt
    state = ConvNeXt(arch='test').state_dict()
    # 1e12 elements from one float: 4 TB as safetensors
    state['stages.0.0.gamma'] = torch.zeros(1).expand(10**12)
    src = tmp_path / 'strided.pth'
    torch.save({'model': state}, src)
    dst = tmp_path / 'out.safetensors'
    result = run_python(['tools/convert_checkpoint.py', str(src), str(dst)],
                        timeout=60, memory_limit=MEMORY_LIMIT)
    assert one_line_error(result) == (
        f'error: {src}: stages.0.0.gamma is a (1000000000000,) view of 4 '
        'bytes; writing it would take 4000000000000')
    assert not dst.exists()
