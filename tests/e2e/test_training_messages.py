"""What tools/train.py says about the work dir it starts in, and where a
full disk stops it.

- ``--resume`` with nothing to resume logged "Auto resumed from the latest
  checkpoint None." (mmengine) and trained from the start; now it says so.
- A training started without ``--resume`` in a work dir that holds
  checkpoints overwrote ``epoch_1.pth`` ... without a word; now it warns
  once, naming them.
- (A full disk while a checkpoint is written: tests/test_fileio.py.)

The demo detector, one epoch on 4 generated 64-pixel images (test_bad_input
has the helpers).
"""
from __future__ import annotations

import logging

import pytest
from mmengine.logging import MMLogger

from e2e.test_bad_input import toy_coco, train  # noqa: F401  (a fixture)


@pytest.fixture
def messages():
    """Log messages from here on, also those of the Runner's logger."""
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Collect()
    original = MMLogger.get_instance

    def get_instance(*args, **kwargs):
        logger = original(*args, **kwargs)
        if handler not in logger.handlers:
            logger.addHandler(handler)
        return logger

    MMLogger.get_instance = get_instance
    get_instance('messages_test')  # the current logger before the Runner's
    yield records
    MMLogger.get_instance = original


@pytest.mark.slow
def test_resume_with_nothing_to_resume(toy_coco, tmp_path,  # noqa: F811
                                       messages):
    work_dir = tmp_path / 'work'
    train(toy_coco, work_dir, resume='auto')
    assert not any('None' in m and 'resumed' in m for m in messages)
    assert f'--resume: nothing to resume in {work_dir} (no last_checkpoint ' \
        'file); training from the start' in messages


@pytest.mark.slow
def test_training_over_earlier_checkpoints_warns(toy_coco,  # noqa: F811
                                                 tmp_path,
                                                 messages):
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    for name in ('epoch_1.pth', 'epoch_2.pth'):
        (work_dir / name).write_bytes(b'an earlier run')
    train(toy_coco, work_dir)
    assert (f'{work_dir} already holds 2 checkpoint(s) this training will '
            'overwrite as it reaches them: epoch_1.pth, epoch_2.pth. To '
            'continue that training instead, use --resume; to keep them, '
            'use another --work-dir.') in messages
