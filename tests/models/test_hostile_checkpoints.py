"""Small hostile checkpoints through every entry point, each under a time
limit: they load or are refused in one line, quickly.

- Shared references: pickle writes a shared object once and refers to it
  after, so four levels of 1000 references to one list are a 10 KB file
  and 1e12 paths. The type check walked every path and never finished
  (``tools/test.py`` and ``tools/infer.py`` hung); it enters each object
  once.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from .entry_points import (ENTRY_POINTS, REPO, loads_or_one_line_error,
                           run_entry_point, toy_data)

READ_AND_COUNT = '''
import sys, time
from convnext_dense.models.checkpoint_io import read_checkpoint_file
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
