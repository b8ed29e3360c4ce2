"""``ruff check`` (rules in ruff.toml) over the repository, with the tests.

The test command is the CI's only entry point (``.ci/run``), so the lint
runs inside it. ruff is a test requirement (requirements/tests.txt).
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_check_is_clean() -> None:
    assert importlib.util.find_spec('ruff') is not None, (
        'ruff is not installed: pip install -r requirements/tests.txt '
        '-c requirements/constraints.txt')
    done = subprocess.run(
        [sys.executable, '-m', 'ruff', 'check', '--no-cache',
         '--output-format', 'concise', str(REPO)],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
