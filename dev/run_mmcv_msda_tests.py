"""Run mmcv 2.1.0's multi-scale deformable attention tests, unchanged, on
the CPU against the default install (mmcv-lite + convnext_dense.ops).

    git clone https://github.com/open-mmlab/mmcv /path/to/mmcv
    python dev/run_mmcv_msda_tests.py /path/to/mmcv [--rev REV] [-- ARGS]

It copies ``tests/test_ops/test_ms_deformable_attn.py`` of revision REV
(default v2.1.0, read with ``git show``: the clone's work tree is not
touched) into a scratch folder, next to ``dev/mmcv_msda_conftest.py`` as its
conftest, which runs the file's CUDA-only cases on the CPU through the op
that mmcv calls on a GPU. Exits with pytest's status.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST = 'tests/test_ops/test_ms_deformable_attn.py'


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('mmcv', help='a git clone of open-mmlab/mmcv '
                        '(work tree or bare)')
    parser.add_argument('--rev', default='v2.1.0',
                        help='the revision to take the test file from '
                        '(default: v2.1.0)')
    parser.add_argument('pytest_args', nargs='*',
                        help='more pytest arguments (after --)')
    args = parser.parse_args(argv)
    shown = subprocess.run(['git', '-C', args.mmcv, 'show',
                            f'{args.rev}:{TEST}'],
                           capture_output=True, text=True)
    if shown.returncode != 0:
        sys.exit(f'run_mmcv_msda_tests: no {TEST} at {args.rev} in '
                 f'{args.mmcv}: {shown.stderr.strip()}')
    scratch = tempfile.mkdtemp(prefix='mmcv_msda_tests_')
    try:
        with open(os.path.join(scratch, os.path.basename(TEST)), 'w') as f:
            f.write(shown.stdout)
        shutil.copy(os.path.join(REPO, 'dev', 'mmcv_msda_conftest.py'),
                    os.path.join(scratch, 'conftest.py'))
        with open(os.path.join(scratch, 'pytest.ini'), 'w') as f:
            f.write('[pytest]\n')  # none of this repository's settings
        env = dict(os.environ, PYTHONPATH=REPO + os.pathsep +
                   os.environ.get('PYTHONPATH', ''))
        return subprocess.run(
            [sys.executable, '-m', 'pytest', '-p', 'no:cacheprovider', '-ra',
             '--rootdir', scratch, scratch, *args.pytest_args],
            env=env, cwd=scratch).returncode
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == '__main__':
    sys.exit(main())
