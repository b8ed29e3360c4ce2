"""Shared pytest setup.

The tests run small tensors on a machine whose few cores are shared, where
PyTorch's intra-op thread pool costs more than it saves: measured, a forward
of the 'test' arch on 4x3x64x64 takes 0.006 s with one thread and 0.23 s with
two while another process keeps the cores busy. One thread unless
OMP_NUM_THREADS says otherwise.
"""
import os
import sys

try:
    import torch
except ImportError:  # the torch-free tests (tests/test_docs.py) still run
    torch = None

if torch is not None and 'OMP_NUM_THREADS' not in os.environ:
    torch.set_num_threads(1)
# Inductor compiles its generated C++ in the process that compiles, not in a
# pool of worker processes that each import torch first: measured, the
# compiled-backbone test (tests/engine/test_channels_last.py) took 43 CPU s
# with the pool and 20 without, its kernels cached (50 and 46 uncached).
# Set before torch._inductor.config is imported, which reads it; the tests'
# child processes inherit it.
os.environ.setdefault('TORCHINDUCTOR_COMPILE_THREADS', '1')


# -- the CPU demos, run once per session in the background -------------------
# (tests/helpers/demos.py). A test marked @pytest.mark.demo('det') gets the
# finished run of `tools/demo.py det` from the `demo_run` fixture; every demo
# a selected test asks for starts when collection ends, so the demos train
# while the rest of the suite runs. Under pytest-xdist the controller makes
# the session's shared folder before its workers start, and removes it when
# they have ended; the first worker to claim a demo runs it for all.
import pytest  # noqa: E402


def _is_xdist_worker(config) -> bool:
    return hasattr(config, 'workerinput')


def pytest_configure(config) -> None:
    if not _is_xdist_worker(config):
        # a folder of this session's own, not one inherited from a pytest
        # that runs this one
        from helpers.demos import SHARED_ENV, shared_dir
        os.environ.pop(SHARED_ENV, None)
        shared_dir()


def pytest_collection_modifyitems(items) -> None:
    # the files of the tests that wait for a demo last, each file's tests
    # kept together (pytest-xdist's --dist loadfile hands out whole files):
    # a worker reaches them when the demos, started at the beginning, have
    # had the rest of the run to train
    waits = {item.path for item in items if item.get_closest_marker('demo')}
    items.sort(key=lambda item: item.path in waits)


def pytest_collection_finish(session) -> None:
    from helpers.demos import RUNS
    for item in session.items:
        for marker in item.iter_markers('demo'):
            RUNS[marker.args[0]].start()


def pytest_sessionfinish(session, exitstatus) -> None:
    if 'helpers.demos' not in sys.modules:
        return
    demos = sys.modules['helpers.demos']
    worker = _is_xdist_worker(session.config)
    for run in demos.RUNS.values():
        # a worker's demo may still be needed by another worker's test
        run.stop(wait=worker and exitstatus != pytest.ExitCode.INTERRUPTED)
    if not worker:
        demos.remove_shared_dir()


@pytest.fixture
def demo_run(request):
    """The finished ``tools/demo.py`` run the test's ``demo`` marker
    names (:class:`helpers.demos.DemoRun`: ``cwd``, ``returncode``,
    ``log``)."""
    from helpers.demos import RUNS
    return RUNS[request.node.get_closest_marker('demo').args[0]].wait()
