"""Checkpoint reading (convnext_dense/checkpoint/reader.py): every name a
checkpoint can be given by ends in one weights-only read.

The remote cases serve files from a local ``http.server`` on 127.0.0.1. A
crafted pickle whose payload creates a marker file is refused through every
scheme mmengine maps to a download (http, https, torchvision://, modelzoo://,
open-mmlab://, openmmlab://, mmcls://) and through every way a config or a
tool reaches a checkpoint (mmengine's ``_load_checkpoint`` that
``tools/test.py``, ``--resume`` and ``load_from`` use, ``load_checkpoint``,
a model-level ``init_cfg=dict(type='Pretrained')``, our backbone loader);
the marker is never written. Before this module existed, each of these ran
the payload (mmengine handed URLs to ``torch.hub``'s loader, which unpickles
with ``weights_only=False``).
"""
from __future__ import annotations

import functools
import http.server
import os
import pickle
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.logging import HistoryBuffer
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import (CheckpointLoader, _load_checkpoint,
                                        load_checkpoint)

from convnext_dense.checkpoint import download as checkpoint_io
from convnext_dense.checkpoint import read_checkpoint, reader
from convnext_dense.models import ConvNeXt
from convnext_dense.checkpoint.download import (URL_PREFIXES, ZOO_PREFIXES,
                                                download)
from convnext_dense.checkpoint.loaders import load_from_local, load_from_remote


class _RunsCode:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command, )


@pytest.fixture
def server(tmp_path: Path):
    """(served folder, base URL, request log): a loopback HTTP server."""
    root = tmp_path / 'served'
    root.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, fmt, *args) -> None:
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(
        ('127.0.0.1', 0), functools.partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield root, f'http://127.0.0.1:{httpd.server_address[1]}', requests
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv('CONVNEXT_DENSE_CACHE', str(tmp_path / 'cache'))
    return tmp_path / 'cache' / 'checkpoints'


@pytest.fixture
def zoo(monkeypatch, server):
    """Points mmengine's model-zoo tables at the loopback server."""
    _, base, _ = server
    tables = dict(
        get_torchvision_models={'evil': f'{base}/evil.pth',
                                'good': f'{base}/good.pth'},
        get_external_models={'evil': f'{base}/evil.pth',
                             'good': f'{base}/good.pth'},
        get_mmcls_models={'evil': f'{base}/evil.pth',
                          'good': f'{base}/good.pth'})
    for name, table in tables.items():
        monkeypatch.setattr(mmengine_checkpoint, name,
                            lambda table=table: dict(table))


def _crafted(path: Path, marker: Path) -> None:
    torch.save({'state_dict': {'w': torch.zeros(1)},
                'meta': _RunsCode(f'touch {marker}')}, path)


def _names(base: str, file: str) -> list[str]:
    stem = file.split('.')[0]
    return [f'{base}/{file}'] + [f'{prefix}{stem}' for prefix in ZOO_PREFIXES]


def test_every_remote_scheme_goes_through_the_safe_reader() -> None:
    for prefix in URL_PREFIXES + ZOO_PREFIXES:
        assert CheckpointLoader._get_checkpoint_loader(
            prefix + 'x/y.pth') is load_from_remote, prefix
    assert CheckpointLoader._get_checkpoint_loader('a/b.pth') is \
        load_from_local
    # mmengine's zoo loaders call this module-level name
    assert mmengine_checkpoint.load_from_http is load_from_remote


def test_crafted_pickle_by_url_is_refused_everywhere(
        server, cache, zoo, tmp_path: Path) -> None:
    root, base, _ = server
    marker = tmp_path / 'pwned'
    _crafted(root / 'evil.pth', marker)
    # control: an unrestricted load of the same file runs the payload
    torch.load(root / 'evil.pth', weights_only=False)
    assert marker.exists()
    marker.unlink()

    for name in _names(base, 'evil.pth'):
        with pytest.raises(pickle.UnpicklingError,
                           match='not allowed in a checkpoint'):
            _load_checkpoint(name, map_location='cpu')  # test.py, resume
        with pytest.raises(pickle.UnpicklingError):
            load_checkpoint(nn.Linear(1, 1), name)
        with pytest.raises(ValueError, match='would run code is refused'):
            read_checkpoint(name)  # the backbone's own loader
        assert not marker.exists(), name
    # the cached download is read as safely on every later load
    assert (cache / checkpoint_io.cache_name(f'{base}/evil.pth')).is_file()
    with pytest.raises(pickle.UnpicklingError):
        _load_checkpoint(f'{base}/evil.pth')
    assert not marker.exists()


def test_pretrained_init_cfg_by_url_is_refused(server, cache,
                                               tmp_path: Path) -> None:
    from mmengine.model import BaseModule
    root, base, _ = server
    marker = tmp_path / 'pwned'
    _crafted(root / 'evil.pth', marker)

    class Net(BaseModule):
        def __init__(self) -> None:
            super().__init__(init_cfg=dict(type='Pretrained',
                                           checkpoint=f'{base}/evil.pth'))
            self.fc = nn.Linear(1, 1)

    with pytest.raises(pickle.UnpicklingError):
        Net().init_weights()
    assert not marker.exists()


def test_backbone_weights_by_url_load_and_are_cached_once(
        server, cache, zoo) -> None:
    root, base, requests = server
    source = ConvNeXt(arch='test')
    torch.save({'model': source.state_dict()}, root / 'good.pth')

    # mmcls:// names are mmpretrain classifiers that mmengine re-keys
    # (``_process_mmcls_checkpoint``); the refusal test covers that scheme
    for name in _names(base, 'good.pth')[:-1]:
        target = ConvNeXt(arch='test', init_cfg=dict(type='Pretrained',
                                                     checkpoint=name))
        target.init_weights()
        for key, value in source.state_dict().items():
            torch.testing.assert_close(target.state_dict()[key], value,
                                       rtol=0, atol=0)
        state = _load_checkpoint(name, map_location='cpu')
        assert set(state['model']) == set(source.state_dict())
    # one file in the cache with its URL beside it, fetched once, no
    # partial file left
    name = checkpoint_io.cache_name(f'{base}/good.pth')
    assert sorted(os.listdir(cache)) == [name, f'{name}.url']
    assert (cache / f'{name}.url').read_text() == f'{base}/good.pth\n'
    assert requests.count('/good.pth') == 1


def test_two_urls_of_one_file_name_are_two_cache_entries(
        server, cache) -> None:
    """The Hub names every model's weights ``model.safetensors``: the
    second model must not be read from the first one's download."""
    root, base, requests = server
    models = {}
    for folder, seed in (('a', 0), ('b', 1)):
        torch.manual_seed(seed)
        models[folder] = ConvNeXt(arch='test').state_dict()
        (root / folder).mkdir()
        torch.save({'model': models[folder]}, root / folder / 'model.pth')
    for _ in range(2):  # downloads, then the cache
        for folder in ('a', 'b'):
            loaded = read_checkpoint(f'{base}/{folder}/model.pth')
            for key, value in models[folder].items():
                torch.testing.assert_close(loaded[key], value, rtol=0,
                                           atol=0)
    assert requests.count('/a/model.pth') == 1
    assert requests.count('/b/model.pth') == 1
    assert len(os.listdir(cache)) == 4  # two files, two URL records


def test_cached_file_without_its_url_record_is_downloaded_again(
        server, cache) -> None:
    root, base, requests = server
    torch.save({'model': ConvNeXt(arch='test').state_dict()},
               root / 'model.pth')
    path = download(f'{base}/model.pth')
    os.remove(f'{path}.url')  # e.g. a crash between record and download
    with open(path, 'wb') as file:
        file.write(b'another file')
    assert download(f'{base}/model.pth') == path
    assert requests.count('/model.pth') == 2
    assert read_checkpoint(path).keys() == \
        ConvNeXt(arch='test').state_dict().keys()


def test_broken_download_leaves_nothing(server, cache) -> None:
    _, base, _ = server
    with pytest.raises(Exception, match='404'):
        download(f'{base}/missing.pth')
    assert not cache.exists() or os.listdir(cache) == []


def test_unknown_zoo_name_is_named(zoo) -> None:
    with pytest.raises(KeyError, match='no model .nothing. under mmcls://'):
        checkpoint_io.local_path('mmcls://nothing')


def test_weights_only_is_explicit(tmp_path: Path, monkeypatch) -> None:
    """torch honours TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD only when weights_only
    is not passed: the reader passes it."""
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    marker = tmp_path / 'pwned'
    _crafted(tmp_path / 'evil.pth', marker)
    with pytest.raises(pickle.UnpicklingError):
        _load_checkpoint(str(tmp_path / 'evil.pth'))
    assert not marker.exists()


# --- crafted files built only from allowed globals --------------------------

class _ObjectDtype:
    """Unpickles as ``numpy.dtype('O')``: a call of the allowed np.dtype."""

    def __reduce__(self):
        return np.dtype, ('O', )


class _ObjectArray:
    """Unpickles as an object array through the allowed ``_reconstruct``,
    without the ObjectDType class the allow-list leaves out."""

    def __init__(self, items: list) -> None:
        self.items = items

    def __reduce__(self):
        return (np._core.multiarray._reconstruct, (np.ndarray, (0, ), b'b'),
                (1, (len(self.items), ), _ObjectDtype(), False, self.items))


class _HistoryBufferState:
    """Unpickles as a HistoryBuffer with the given extra state."""

    def __init__(self, **state) -> None:
        self.state = state

    def __reduce__(self):
        return HistoryBuffer, (), dict(
            dict(_log_history=np.zeros(1), _count_history=np.ones(1),
                 max_length=1), **self.state)


@pytest.mark.parametrize('case, refusal', [
    # HistoryBuffer.__setstate__ puts these into the table every buffer of
    # the process calls: later logging would call np.ndarray(buffer) ...
    ('plant_ndarray', 'it replaces the statistics methods of every '
     'HistoryBuffer'),
    ('plant_getattr', 'it replaces the statistics methods of every '
     'HistoryBuffer'),
    # an instance-level table that shadows the class's
    ('shadow_table', "a HistoryBuffer with the fields ['_count_history', "
     "'_log_history', '_statistics_methods', 'max_length']"),
    ('object_array', 'a numpy array of dtype object'),
    ('object_history', 'a numpy array of dtype object'),
])
def test_allowed_types_combined_to_reach_code_are_refused(
        tmp_path: Path, case: str, refusal: str) -> None:
    payload = dict(
        plant_ndarray=lambda: _HistoryBufferState(
            statistics_methods=dict(mean=np.ndarray)),
        plant_getattr=lambda: _HistoryBufferState(
            statistics_methods=dict(mean=getattr, extra=getattr)),
        shadow_table=lambda: _HistoryBufferState(
            _statistics_methods=dict(mean=np.dtype)),
        object_array=lambda: _ObjectArray([HistoryBuffer, np.ndarray]),
        object_history=lambda: _HistoryBufferState(
            _log_history=_ObjectArray([HistoryBuffer])),
    )[case]()
    path = tmp_path / 'epoch_1.pth'
    torch.save(dict(meta=dict(epoch=1), state_dict={'w': torch.zeros(1)},
                    message_hub=dict(log_scalars=dict(loss=payload))), path)
    HistoryBuffer()  # registers the default statistics
    table = dict(HistoryBuffer._statistics_methods)

    with pytest.raises(reader.UnsafeCheckpointError) as info:
        _load_checkpoint(str(path), map_location='cpu')
    assert str(info.value) == (
        f'{path} is not a checkpoint mmengine writes, so it was not loaded: '
        f'{refusal}')
    assert HistoryBuffer._statistics_methods == table

    # what mmengine writes still loads
    buffer = HistoryBuffer()
    buffer.update(2.0)
    torch.save(dict(message_hub=dict(log_scalars=dict(loss=buffer))), path)
    loaded = _load_checkpoint(str(path), map_location='cpu')
    assert loaded['message_hub']['log_scalars']['loss'].mean() == 2.0
    assert HistoryBuffer._statistics_methods == table
