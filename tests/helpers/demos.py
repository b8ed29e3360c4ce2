"""The CPU demos, each run once per test session, in the background.

The demo trainings (``tools/demo.py det``, ``dino``, ``seg``, ``seg`` with a
V2 backbone, and ``seg-m2f``) are the longest runs of the suite. Each runs
on one thread (as the demos do by default) beside the rest of the suite, so
that the cores are never idle while one test waits or runs Python. When a
selected test asks for a demo (the ``demo_runs`` fixture of
tests/conftest.py), every selected demo starts as a subprocess as soon as
collection ends, and the tests that check a demo wait for its result.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from .tool_runs import REPO

# name -> the arguments of tools/demo.py
DEMOS = {
    'det': ['det'],
    'dino': ['dino'],
    'seg': ['seg'],
    'seg-v2': ['seg', '--cfg-options', 'model.backbone.arch=v2-test'],
    'seg-m2f': ['seg-m2f'],
}
# the longest a demo may take from its start (each took 4-8 min alone
# under load; they share the cores with the rest of the suite)
TIMEOUT = 3600


@dataclass
class DemoRun:
    """One ``tools/demo.py`` subprocess in a scratch working directory."""
    name: str
    cwd: str = ''
    returncode: int | None = None
    log: str = ''
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    _started: float = 0.

    def start(self) -> None:
        if self._proc is not None or self.returncode is not None:
            return
        self.cwd = tempfile.mkdtemp(prefix=f'convnext_dense_demo_{self.name}_')
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep +
                   os.environ.get('PYTHONPATH', ''))
        env.setdefault('OMP_NUM_THREADS', '1')
        self._log_file = open(os.path.join(self.cwd, 'demo.log'), 'w+')
        self._proc = subprocess.Popen(
            [sys.executable, os.path.join(REPO, 'tools', 'demo.py'),
             *DEMOS[self.name]], cwd=self.cwd, env=env,
            stdout=self._log_file, stderr=subprocess.STDOUT, text=True,
            preexec_fn=_die_with_the_parent if sys.platform == 'linux'
            else None)
        self._started = time.monotonic()

    def wait(self) -> 'DemoRun':
        """Start the run if it has not started, and wait for its end."""
        self.start()
        if self.returncode is None:
            left = TIMEOUT - (time.monotonic() - self._started)
            try:
                self.returncode = self._proc.wait(timeout=max(left, 1))
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self.returncode = self._proc.wait()
            self._log_file.seek(0)
            self.log = self._log_file.read()
            self._log_file.close()
        return self

    def stop(self) -> None:
        """End the subprocess (if still running) and remove its folder."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        if self.cwd:
            shutil.rmtree(self.cwd, ignore_errors=True)


def _die_with_the_parent() -> None:
    """In the child: SIGKILL when pytest ends, however it ends (a timeout's
    SIGTERM skips pytest_sessionfinish)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


RUNS = {name: DemoRun(name) for name in DEMOS}
