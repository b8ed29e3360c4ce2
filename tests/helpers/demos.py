"""The CPU demos, each run once per test session, in the background.

The demo trainings (``tools/demo.py det``, ``dino``, ``seg``, ``seg`` with a
V2 backbone, and ``seg-m2f``) are the longest runs of the suite. Each runs
on one thread (as the demos do by default) beside the rest of the suite, so
that the cores are never idle while one test waits or runs Python. When a
selected test asks for a demo (the ``demo_run`` fixture of
tests/conftest.py), every selected demo starts as a subprocess as soon as
collection ends, and the tests that check a demo wait for its result.

With pytest-xdist every worker collects every test, and each demo still
runs once: the worker that first creates the demo's folder in the session's
shared folder (:func:`shared_dir`) runs it, and writes ``demo.rc`` there
when it ends; a test in any worker reads the finished run from the folder.
"""
from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

from convnext_dense.fileio import atomic_write

from .forked import REPO, repo_env

# name -> the arguments of tools/demo.py
DEMOS = {
    'det': ['det'],
    'dino': ['dino'],
    'seg': ['seg'],
    # the V2 backbone on half the seg demo's schedule (400 of 800 iterations)
    'seg-v2': ['seg', '--cfg-options', 'model.backbone.arch=v2-test',
               'train_cfg.max_iters=400', 'train_cfg.val_interval=400',
               'param_scheduler.1.end=400',
               'default_hooks.checkpoint.interval=400'],
    'seg-m2f': ['seg-m2f'],
}
# the longest a demo may take from its start (each took 4-8 min alone
# under load; they share the cores with the rest of the suite)
TIMEOUT = 3600
# the folder every process of one test session shares (set by
# tests/conftest.py before pytest-xdist starts its workers)
SHARED_ENV = 'CONVNEXT_DENSE_TEST_SHARED'


def shared_dir() -> str:
    """The session's shared folder (made here when no conftest set one)."""
    if not os.environ.get(SHARED_ENV):
        os.environ[SHARED_ENV] = tempfile.mkdtemp(
            prefix='convnext_dense_tests_')
    return os.environ[SHARED_ENV]


@dataclass
class DemoRun:
    """One ``tools/demo.py`` run in ``<shared folder>/demo_<name>``."""
    name: str
    cwd: str = ''
    returncode: int | None = None
    log: str = ''
    _proc: subprocess.Popen | None = field(default=None, repr=False)
    _watcher: threading.Thread | None = field(default=None, repr=False)
    _started: float = 0.

    def start(self) -> None:
        """Start the run, unless this or another process of the session
        already has."""
        if self.cwd:
            return
        self.cwd = os.path.join(shared_dir(), f'demo_{self.name}')
        self._started = time.monotonic()
        try:
            os.mkdir(self.cwd)  # the claim: one process of the session wins
        except FileExistsError:
            return
        with open(os.path.join(self.cwd, 'demo.log'), 'w') as log:
            self._proc = subprocess.Popen(
                [sys.executable, os.path.join(REPO, 'tools', 'demo.py'),
                 *DEMOS[self.name]], cwd=self.cwd, env=repo_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_the_parent if sys.platform == 'linux'
                else None)
        self._watcher = threading.Thread(target=self._record_the_end,
                                         daemon=True)
        self._watcher.start()

    def _record_the_end(self) -> None:
        try:
            returncode = self._proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            returncode = self._proc.wait()
        # whole or absent: the other workers poll for this file
        atomic_write(str(returncode).encode(),
                     os.path.join(self.cwd, 'demo.rc'))

    def wait(self) -> 'DemoRun':
        """Start the run if no process has, and wait for its end."""
        self.start()
        if self.returncode is None:
            rc_file = os.path.join(self.cwd, 'demo.rc')
            while not os.path.exists(rc_file):
                if time.monotonic() - self._started > TIMEOUT + 60:
                    raise TimeoutError(f'demo {self.name}: no end recorded '
                                       f'in {rc_file}')
                time.sleep(0.5)
            with open(rc_file) as f:
                self.returncode = int(f.read())
            with open(os.path.join(self.cwd, 'demo.log')) as f:
                self.log = f.read()
        return self

    def stop(self, wait: bool) -> None:
        """At the end of this process's session: let a run this process
        started finish (``wait``: another worker may still need it), or end
        it."""
        if self._proc is None or self._proc.poll() is not None:
            return
        if wait:
            self._watcher.join()
        else:
            self._proc.kill()
            self._proc.wait()


def _die_with_the_parent() -> None:
    """In the child: SIGKILL when pytest ends, however it ends (a timeout's
    SIGTERM skips pytest_sessionfinish)."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def remove_shared_dir() -> None:
    """Remove the session's shared folder (by the process that made it)."""
    if os.environ.get(SHARED_ENV):
        shutil.rmtree(os.environ.pop(SHARED_ENV), ignore_errors=True)


RUNS = {name: DemoRun(name) for name in DEMOS}
