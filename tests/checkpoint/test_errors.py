"""One vocabulary for files that are no checkpoint at all.

A text file as checkpoint gave a 40-line ``KeyError``/``IndexError``
traceback from torch's legacy loader (13 of 66 first characters); an HTML
error page or a git-lfs pointer, the usual failed downloads, was called a
possibly crafted file, followed by torch's advice to load it with
``weights_only=False``. Each is now named for what it is, in one line with
the likely cause, by the reader and by every tool; an unreadable file is
not called truncated.
"""
from __future__ import annotations

import os
import string
from pathlib import Path

import pytest
import torch

from convnext_dense.checkpoint import preflight
from convnext_dense.checkpoint.reader import (UnreadableCheckpointError,
                                                 read_checkpoint_file)

from .entry_points import one_line_error, run_entry_point, toy_data

TEXT = 'it is a text file (an interrupted download, or the wrong file?)'
HTML = ('it is an HTML page (an error or login page saved in place of the '
        'download?)')
LFS = ('it is a git-lfs pointer, not the file it points to: run `git lfs '
       'pull` in its repository')
EMPTY = 'the file is empty (0 bytes): an interrupted download or copy?'
BYTES = ('its bytes are no checkpoint format (neither a torch.save archive, '
         'a legacy torch file nor safetensors): an interrupted or corrupted '
         'download?')


def corpus(folder: Path) -> dict[Path, str]:
    """Files that are no checkpoint -> what the reader must call them."""
    folder.mkdir(exist_ok=True)
    files = {}
    for i, first in enumerate(string.printable):
        path = folder / f'text_{i}.pth'
        path.write_text(f'{first}epoch=12 mAP=0.41\n{{"a": [1, 2]}}\n')
        files[path] = TEXT
    pages = {
        'html.pth': '<!DOCTYPE html>\n<html><head><title>404 Not Found'
                    '</title></head><body>Not Found</body></html>\n',
        'html_lower.bin': '\n  <html>\n<body>Sign in to continue</body>'
                          '</html>',
        'html.safetensors': '<!doctype html><html></html>',
    }
    for name, page in pages.items():
        (folder / name).write_text(page)
        files[folder / name] = HTML
    lfs = ('version https://git-lfs.github.com/spec/v1\noid sha256:'
           + 'ab' * 32 + '\nsize 114539183\n')
    for name in ('lfs.pth', 'lfs.safetensors'):
        (folder / name).write_text(lfs)
        files[folder / name] = LFS
    for name in ('empty.pth', 'empty.safetensors'):
        (folder / name).write_bytes(b'')
        files[folder / name] = EMPTY
    noise = torch.Generator().manual_seed(0)
    for i in range(5):
        data = torch.randint(0, 256, (4096, ), generator=noise,
                             dtype=torch.uint8).numpy().tobytes()
        if data[:1] == b'\x80' or data[:4] == b'PK\x03\x04':
            data = b'\x00' + data
        (folder / f'random_{i}.pth').write_bytes(data)
        files[folder / f'random_{i}.pth'] = BYTES
    return files


def test_every_non_checkpoint_is_named_in_one_line(tmp_path: Path) -> None:
    files = corpus(tmp_path)
    assert len(files) == len(string.printable) + 12
    for path, what in files.items():
        with pytest.raises(UnreadableCheckpointError) as info:
            read_checkpoint_file(str(path))
        assert str(info.value) == f'{path} is not a checkpoint: {what}'


def test_truncated_checkpoint_keeps_its_message(tmp_path: Path) -> None:
    path = tmp_path / 'epoch_3.pth'
    torch.save({'state_dict': {'w': torch.zeros(1000)}}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(UnreadableCheckpointError) as info:
        read_checkpoint_file(str(path))
    message = str(info.value)
    assert message.startswith(f'{path} is not a complete checkpoint: '
                              'truncated (e.g. by a crash while it was '
                              'written, or an interrupted download)')
    assert '\n' not in message and 'weights_only' not in message


def test_permission_denied_is_not_called_truncated(tmp_path: Path,
                                                   monkeypatch) -> None:
    path = tmp_path / 'epoch_3.pth'
    torch.save({'state_dict': {'w': torch.zeros(1)}}, path)
    os.chmod(path, 0)
    if os.access(path, os.R_OK):  # root reads anyway: deny as the OS would

        def denied(file, *args, **kwargs):
            raise PermissionError(13, 'Permission denied', str(file))

        monkeypatch.setattr(preflight, 'open', denied,
                            raising=False)
    with pytest.raises(UnreadableCheckpointError) as info:
        read_checkpoint_file(str(path))
    assert str(info.value) == (
        f'{path} cannot be read: permission denied (the file is there; its '
        'permissions do not let this user read it)')


class _RunsShell:

    def __reduce__(self):
        return os.system, ('true', )


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> Path:
    return toy_data(tmp_path_factory.mktemp('toy_coco'))


@pytest.mark.slow
@pytest.mark.parametrize('entry_point, name', [
    ('test', 'html.pth'), ('infer', 'lfs.pth'), ('export', 'text_94.pth'),
    ('export', 'crafted'), ('convert', 'empty.pth'),
    ('init_cfg', 'random_0.pth'), ('resume', 'html.pth'),
    ('api', 'text_0.pth')])
def test_every_tool_says_the_same_in_one_line(entry_point: str, name: str,
                                              data: Path,
                                              tmp_path: Path) -> None:
    files = corpus(tmp_path / 'corpus')
    if name == 'crafted':
        path = tmp_path / 'crafted.pth'
        torch.save({'state_dict': {}, 'x': _RunsShell()}, path)
        expected = (f'{path} contains objects that are not allowed in a '
                    'checkpoint, so it was not loaded')
    else:
        path = tmp_path / 'corpus' / name
        expected = f'{path} is not a checkpoint: {files[path]}'
    line = one_line_error(run_entry_point(entry_point, path, data,
                                          tmp_path / 'run'))
    assert line.startswith(f'error: {expected}')
    assert 'weights_only' not in line
