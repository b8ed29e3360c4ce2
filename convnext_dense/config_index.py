"""Config loading without re-reading mmdet's and mmseg's package metadata.

For every ``mmdet::`` or ``mmseg::`` base a config names, mmengine's
``Config.fromfile`` asks whether the package is installed by reloading
``pkg_resources`` (0.15 s), then reads the package's
``.mim/model-index.yml`` and every metafile it lists (about 100 YAML files
for mmdet, 0.2-1 s) to look the name up; the next base does both again. The
configs of this package name two to four such bases each.
:func:`read_package_metadata_once` keeps both answers for the life of the
process (installed packages and their files do not change under a running
tool); mmengine's lookup itself is unchanged.

Installed by ``convnext_dense/__init__.py``, before any tool loads a config.
"""
from __future__ import annotations

import functools
import os.path as osp


@functools.lru_cache(maxsize=None)
def _parsed(path: str, mtime: float):
    from mmengine.fileio import load
    return load(path)


def _load(file, *args, **kwargs):
    """mmengine.fileio.load, with the files of an installed package's
    ``.mim`` folder parsed once. mmengine's lookup, the only caller
    (``mmengine.config.utils``), reads what it gets and changes nothing."""
    from mmengine.fileio import load
    if (args or kwargs or not isinstance(file, str)
            or f'{osp.sep}.mim{osp.sep}' not in file):
        return load(file, *args, **kwargs)
    return _parsed(file, osp.getmtime(file))


@functools.lru_cache(maxsize=None)
def _is_installed(package: str) -> bool:
    from mmengine.utils import is_installed
    return is_installed(package)


def read_package_metadata_once() -> None:
    """Let mmengine's config loading read each package's metadata once."""
    from mmengine.config import config, utils
    utils.load = _load
    config.is_installed = _is_installed
