"""mmengine's config loading and printing, without doing the same work twice.

- **Loading.** For every ``mmdet::`` or ``mmseg::`` base a config names,
  mmengine's ``Config.fromfile`` asks whether the package is installed by
  reloading ``pkg_resources`` (0.15 s), then reads the package's
  ``.mim/model-index.yml`` and every metafile it lists (about 100 YAML files
  for mmdet, 0.2-1 s) to look the name up; the next base does both again.
  The configs of this package name two to four such bases each.
- **Printing.** ``Config.pretty_text`` formats the whole config with yapf
  (0.8 s for the detection demo's 600 lines) each time it is asked: the log
  of the environment, the dumped config, the runtime-info hook and every
  checkpoint's metadata ask for it, six times in a short training run.

:func:`cache_config_work` keeps the answers for the life of the process:
the installed packages and their files do not change under a running tool,
and yapf's output depends only on its input text and style. mmengine's
lookup and formatting themselves are unchanged. Installed by
``convnext_dense/__init__.py``, before any tool loads a config.
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


@functools.lru_cache(maxsize=16)
def _formatted(text: str, style: tuple) -> tuple[str, bool]:
    from yapf.yapflib.yapf_api import FormatCode
    return FormatCode(text, style_config=dict(style))


def _format_code(text, style_config=None, **kwargs):
    """yapf's FormatCode, each (text, style) formatted once."""
    if kwargs or not isinstance(style_config, dict):
        from yapf.yapflib.yapf_api import FormatCode
        return FormatCode(text, style_config=style_config, **kwargs)
    return _formatted(text, tuple(sorted(style_config.items())))


def cache_config_work() -> None:
    """Let mmengine read each package's metadata once and format each
    config text once."""
    from mmengine.config import config, utils
    utils.load = _load
    config.is_installed = _is_installed
    config.FormatCode = _format_code
