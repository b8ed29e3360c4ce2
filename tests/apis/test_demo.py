"""The demos' table (convnext_dense/apis/demo.py); the demos themselves run
in tests/apis/test_inference.py and, in full, in the slow e2e tests."""
from __future__ import annotations

import os.path as osp

import pytest

from convnext_dense.apis.demo import REPO_ROOT, TASKS
from convnext_dense.paths import CONFIG_DIR

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_repo_root_is_the_repository() -> None:
    # apis/demo.py once took its own folder's parent (convnext_dense/) for
    # the root, and `tools/demo.py det` could not find its config
    assert REPO_ROOT == REPO
    assert CONFIG_DIR == osp.join(REPO, 'configs')


@pytest.mark.parametrize('task', sorted(TASKS))
def test_every_demo_config_exists(task: str) -> None:
    assert osp.isfile(osp.join(REPO_ROOT, TASKS[task].config))
