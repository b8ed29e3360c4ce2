"""A terminal that shows what a person reads; the log file keeps the rest.

mmengine's Runner logs the whole config (about 600 lines for the detection
demo), the hook order (about 95) and the environment (about 30) to the
terminal, and mmengine, mmdet and setuptools add deprecation warnings that
no user of this package can act on; errors and metrics came after 700-1000
lines. :class:`QuietRunner` keeps those dumps out of the terminal and in
the log file of the work dir (:mod:`convnext_dense.known_warnings`
silences the harmless third-party warnings at the module that raises
them). :func:`det_local_visualizer_class` fixes the "bbox/polygon is out of
bounds" warnings at their cause.
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import logging

import numpy as np
from mmengine.runner import Runner

from ..registry import VISUALIZERS

# the start of the messages that go to the log file only
FILE_ONLY = (
    'Config:\n',  # Runner._log_env: the config dump
    '\n' + '-' * 60 + '\nSystem environment',  # Runner._log_env
    'Hooks will be executed in the following order',  # Runner.train
    'Exp name: ',  # LoggerHook, every epoch
    '"FileClient" will be deprecated',  # mmengine's own deprecations
    '"HardDiskBackend" is the alias',
    # mmengine, for every metric without a default prefix: mmseg's IoUMetric
    # logs its keys (mIoU, ...) unprefixed, as intended
    'The prefix is not set in metric class',
)

# a record with this attribute set goes to the log file only
FILE_ONLY_ATTR = 'convnext_dense_file_only'


class ConsoleDumpFilter(logging.Filter):
    """Drops the records of :data:`FILE_ONLY` and those marked
    :data:`FILE_ONLY_ATTR` (put on console handlers)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (getattr(record, FILE_ONLY_ATTR, False)
                    or record.getMessage().startswith(FILE_ONLY))


class PrintsToLog(io.TextIOBase):
    """A ``sys.stdout`` that logs each printed line to the log file only:
    pycocotools prints about 25 lines per COCO evaluation ("loading
    annotations into memory...", the AP table) with ``print``."""

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self.pending = ''

    def write(self, text: str) -> int:
        self.pending += text
        *lines, self.pending = self.pending.split('\n')
        for line in lines:
            if line.strip():
                self.logger.info(line, extra={FILE_ONLY_ATTR: True})
        return len(text)


def quiet_console(logger: logging.Logger) -> None:
    """Keep :data:`FILE_ONLY` messages off the logger's terminal handlers;
    its file handlers still get them."""
    for handler in logger.handlers:
        if (isinstance(handler, logging.StreamHandler)
                and not isinstance(handler, logging.FileHandler)):
            handler.addFilter(ConsoleDumpFilter())


class QuietRunner(Runner):
    """mmengine's Runner with the config, environment and hook dumps, and
    what third-party code prints while it trains, validates or tests, in
    the log file only (``--verbose`` uses the plain Runner). The console
    handler keeps the real stdout, so progress and metrics still show."""

    def build_logger(self, *args, **kwargs):
        logger = super().build_logger(*args, **kwargs)
        quiet_console(logger)
        return logger

    def _prints_to_log(self):
        return contextlib.redirect_stdout(PrintsToLog(self.logger))

    def train(self):
        with self._prints_to_log():
            return super().train()

    def val(self):
        with self._prints_to_log():
            return super().val()

    def test(self):
        with self._prints_to_log():
            return super().test()


def _inside(position: np.ndarray, width: int, height: int) -> bool:
    # boxes are continuous: a box covering the last pixel column ends at
    # x = width (mmdet clips predictions to [0, width] too)
    return bool((position[..., 0] >= 0).all() & (position[..., 0] <= width
                                                 ).all()
                & (position[..., 1] >= 0).all()
                & (position[..., 1] <= height).all())


@functools.cache
def det_local_visualizer_class() -> type:
    """mmdet's ``DetLocalVisualizer`` without the spurious "bbox/polygon is
    out of bounds" warnings: mmengine checks corners as pixel indices (x <
    width), but a box touching the right or bottom border ends at x = width
    (8 of the toy COCO val set's 149 boxes; predictions are clipped to the
    same edge). Boxes reaching past the image still warn.

    Made on first use, not when this module is imported: mmdet may be the
    one importing the package (``mmcv.ops`` -> ``mmcv._ext``), half imported
    itself at that moment."""
    from mmdet.visualization import DetLocalVisualizer as _MMDetVisualizer

    class DetLocalVisualizer(_MMDetVisualizer):
        __doc__ = det_local_visualizer_class.__doc__

        def _is_posion_valid(self, position: np.ndarray) -> bool:
            return _inside(np.asarray(position), self.width, self.height)

    return DetLocalVisualizer


if importlib.util.find_spec('mmdet') is not None:

    @VISUALIZERS.register_module(name='DetLocalVisualizer')
    def build_det_local_visualizer(**kwargs):
        """``type='convnext_dense.DetLocalVisualizer'`` in a config: the
        named instance of :func:`det_local_visualizer_class` (mmengine's
        visualizers are named instances, ``get_instance(name, ...)``)."""
        return det_local_visualizer_class().get_instance(**kwargs)
