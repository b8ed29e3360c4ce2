"""The OpenVINO backend's tests (tests/deploy/openvino_cases.py), run by a
pytest of their own in a child process.

OpenVINO brings its own native threading and kernel libraries; loaded into
the same process as torch and onnxruntime, the suite's interpreter later
died with a segmentation fault in unrelated tests. So the suite never
imports OpenVINO itself: this test runs those cases in a fresh interpreter,
with the markers this run selected, and fails with their output if any
fails.
"""
from __future__ import annotations

import os.path as osp
import subprocess
import sys

import pytest

pytest.importorskip('onnxruntime')
if __import__('importlib').util.find_spec('openvino') is None:
    pytest.skip('openvino is not installed (pip install '
                '"convnext_dense[deploy]")', allow_module_level=True)

CASES = osp.join(osp.dirname(__file__), 'openvino_cases.py')


@pytest.mark.slow  # ~40 s of CPU: a child pytest with OpenVINO
def test_openvino_cases_in_their_own_process(request, tmp_path):
    markexpr = request.config.getoption('markexpr') or ''
    command = [sys.executable, '-m', 'pytest', CASES, '-q',
               '-n', '0', '-p', 'no:cacheprovider', '--basetemp',
               str(tmp_path)]
    if markexpr:
        command += ['-m', markexpr]
    done = subprocess.run(command, capture_output=True, text=True,
                          cwd=osp.dirname(osp.dirname(osp.dirname(
                              osp.abspath(__file__)))), timeout=1800)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    assert ' passed' in done.stdout and 'failed' not in done.stdout
