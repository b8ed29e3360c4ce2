"""What the tools change in mmengine's Runner: the config it dumps.

mmengine's Runner writes its config to ``WORK_DIR/<config name>`` with
``open(path, 'w')``: through a symbolic link there (truncating whatever it
points to), and, for ``tools/test.py`` run in a training's work dir, over
the config that training dumped (which ``tools/infer.py WORK_DIR`` and a
later ``--resume`` read). :func:`runner_class` gives a Runner class whose
dump goes through :func:`convnext_dense.fileio.atomic_open` (whole, never
through a link) and, for a run that does not train, into the run's own
log dir (``WORK_DIR/<timestamp>/``).
"""
from __future__ import annotations

import os.path as osp

from mmengine.dist import master_only

from convnext_dense.fileio import atomic_open


class SafeConfigDumpMixin:
    """Runner mix-in: see the module docstring. ``config_in_log_dir``
    chooses the log dir over the work dir."""

    config_in_log_dir = False

    @master_only
    def dump_config(self) -> None:
        name = (osp.basename(self.cfg.filename) if self.cfg.filename else
                f'{self.timestamp}.py')
        folder = self.log_dir if self.config_in_log_dir else self.work_dir
        with atomic_open(osp.join(folder, name), 'w') as f:
            f.write(self.cfg.dump())  # the text Config.dump(file) writes


def runner_class(base: type, training: bool = True) -> type:
    """``base`` (mmengine's Runner or a subclass) with
    :class:`SafeConfigDumpMixin`; ``training=False`` dumps into the log
    dir."""
    return type(base.__name__, (SafeConfigDumpMixin, base),
                dict(config_in_log_dir=not training,
                     __module__=__name__))
