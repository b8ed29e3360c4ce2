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


# -- the CPU demos, run once per session in the background -------------------
# (tests/helpers/demos.py). A test marked @pytest.mark.demo('det') gets the
# finished run of `tools/demo.py det` from the `demo_run` fixture; every demo
# a selected test asks for starts when collection ends, so the demos train on
# the core the rest of the suite leaves idle.
import pytest  # noqa: E402


def pytest_collection_finish(session) -> None:
    from helpers.demos import RUNS
    for item in session.items:
        for marker in item.iter_markers('demo'):
            RUNS[marker.args[0]].start()


def pytest_sessionfinish(session) -> None:
    if 'helpers.demos' in sys.modules:
        for run in sys.modules['helpers.demos'].RUNS.values():
            run.stop()


@pytest.fixture
def demo_run(request):
    """The finished ``tools/demo.py`` run the test's ``demo`` marker
    names (:class:`helpers.demos.DemoRun`: ``cwd``, ``returncode``,
    ``log``)."""
    from helpers.demos import RUNS
    return RUNS[request.node.get_closest_marker('demo').args[0]].wait()
