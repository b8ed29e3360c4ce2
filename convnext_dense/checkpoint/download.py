"""Checkpoints by URL or model-zoo name: downloaded into a cache, then
read by :func:`~.reader.read_checkpoint_file` like any local file.

- ``http://`` and ``https://``;
- the model-zoo names mmengine maps to a download (``torchvision://``,
  ``modelzoo://``, ``open-mmlab://``, ``openmmlab://``, ``mmcls://``),
  resolved through mmengine's own tables.

A download is named after its whole URL (:func:`cache_name`) and the URL is
recorded beside it, so two URLs never share a cache file.
"""
from __future__ import annotations

import hashlib
import os
import os.path as osp
import urllib.request
from typing import Any, Optional
from urllib.parse import urlparse

from mmengine.dist import barrier, get_dist_info
from mmengine.logging import print_log
from mmengine.runner import checkpoint as mmengine_checkpoint

from convnext_dense.fileio import atomic_open

from .reader import read_checkpoint_file

# ---------------------------------------------------------------------------

URL_PREFIXES = ('http://', 'https://')
# names mmengine resolves to a download through its model-zoo tables
ZOO_PREFIXES = ('torchvision://', 'modelzoo://', 'open-mmlab://',
                'openmmlab://', 'mmcls://')


def cache_dir() -> str:
    """Where downloaded checkpoints are kept:
    ``$CONVNEXT_DENSE_CACHE/checkpoints``, by default
    ``~/.cache/convnext_dense/checkpoints``."""
    root = os.environ.get('CONVNEXT_DENSE_CACHE',
                          osp.join('~', '.cache', 'convnext_dense'))
    return osp.join(osp.expanduser(root), 'checkpoints')


def _fetch(url: str, dst: str, chunk: int = 1 << 20) -> None:
    """Download ``url`` to ``dst`` atomically (:func:`~convnext_dense.
    fileio.atomic_open`). A broken download leaves no ``dst``."""
    print_log(f'downloading {url} to {dst}', logger='current')
    with urllib.request.urlopen(url) as response, atomic_open(dst) as out:
        total = int(response.headers.get('Content-Length') or 0)
        done, reported = 0, 0
        while True:
            data = response.read(chunk)
            if not data:
                break
            out.write(data)
            done += len(data)
            if done - reported >= 64 * chunk:  # a line every 64 MiB
                reported = done
                print_log(f'  {done >> 20} MiB' +
                          (f' of {total >> 20} MiB' if total else ''),
                          logger='current')


def cache_name(url: str) -> str:
    """The cache file of ``url``: a short hash of the whole URL, then the
    last part of its path, e.g. ``1f0c9d2e7a4b5c36-model.pth``. Two URLs
    never share a file, although the Hub names every model's weights
    ``model.safetensors``."""
    name = osp.basename(urlparse(url).path) or 'checkpoint.pth'
    digest = hashlib.sha256(url.encode('utf-8')).hexdigest()[:16]
    return f'{digest}-{name}'


def _cached_url(path: str) -> Optional[str]:
    """The URL recorded beside a cached file, or None."""
    try:
        with open(path + '.url', encoding='utf-8') as file:
            return file.read().strip()
    except OSError:
        return None


def download(url: str, directory: Optional[str] = None) -> str:
    """The local path of ``url``, downloaded into the cache if not there.

    The file is named by :func:`cache_name`, and the URL is written beside
    it (``NAME.url``). A file whose recorded URL is ``url`` is not
    downloaded again (and is read, like any file, with
    :func:`read_checkpoint_file`). In a distributed run, rank 0 downloads
    while the others wait.

    Args:
        url: An ``http://`` or ``https://`` URL.
        directory: The cache folder. Defaults to :func:`cache_dir`.

    Returns:
        The path of the cached file.
    """
    directory = directory or cache_dir()
    dst = osp.join(directory, cache_name(url))
    rank, world_size = get_dist_info()
    if rank == 0 and not (osp.isfile(dst) and _cached_url(dst) == url):
        os.makedirs(directory, exist_ok=True)
        # a file is only taken from the cache when its record names this
        # URL: an unrecorded file goes, then the record, then the download
        if osp.isfile(dst):
            os.remove(dst)
        with open(dst + '.url', 'w', encoding='utf-8') as record:
            record.write(url + '\n')
        try:
            _fetch(url, dst)
        except BaseException:
            os.remove(dst + '.url')
            raise
    if world_size > 1:
        barrier()
    return dst


def _zoo_url(filename: str) -> str:
    """The URL (or mmengine-home path) mmengine's tables give a zoo name."""
    ckpt = mmengine_checkpoint
    prefix = next(p for p in ZOO_PREFIXES if filename.startswith(p))
    name = filename[len(prefix):]
    if prefix in ('torchvision://', 'modelzoo://'):
        table = ckpt.get_torchvision_models()
    elif prefix == 'mmcls://':
        table = ckpt.get_mmcls_models()
    else:
        table = ckpt.get_external_models()
        name = ckpt.get_deprecated_model_names().get(name, name)
    if name not in table:
        raise KeyError(f'{filename}: mmengine knows no model {name!r} '
                       f'under {prefix}')
    url = table[name]
    if url.startswith(URL_PREFIXES):
        return url
    return osp.join(ckpt._get_mmengine_home(), url)  # open-mmlab local files


def local_path(filename: str) -> str:
    """A local path for any checkpoint name: a path (``~`` expanded), a URL
    (downloaded, see :func:`download`) or a model-zoo name."""
    filename = os.fspath(filename)
    if filename.startswith(ZOO_PREFIXES):
        filename = _zoo_url(filename)
    if filename.startswith(URL_PREFIXES):
        return download(filename)
    return osp.expanduser(filename)


def load_checkpoint_file(filename: str, map_location: Any = 'cpu') -> Any:
    """Read a checkpoint given by any name :func:`local_path` takes."""
    checkpoint = read_checkpoint_file(local_path(filename), map_location)
    if os.fspath(filename).startswith('mmcls://'):
        checkpoint = mmengine_checkpoint._process_mmcls_checkpoint(checkpoint)
    return checkpoint
