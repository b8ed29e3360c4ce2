"""convnext_dense.config_cache: mmdet's model index is parsed once per
process and each config text formatted once; configs load and print
exactly as with mmengine's own lookup and yapf."""
from __future__ import annotations

from pathlib import Path

import pytest
from mmengine.config import Config
from mmengine.config import config as mm_config
from mmengine.config import utils as mm_utils

from convnext_dense import config_cache

pytest.importorskip('mmdet')

REPO = Path(__file__).resolve().parents[1]
# four `mmdet::` bases: the schedule, runtime, dataset and model
CONFIG = str(REPO / 'configs' / 'cascade_convnext_t.py')


def test_the_package_installs_it() -> None:
    assert mm_utils.load is config_cache._load
    assert mm_config.is_installed is config_cache._is_installed
    assert mm_config.FormatCode is config_cache._format_code


def test_each_metadata_file_is_parsed_once() -> None:
    config_cache._parsed.cache_clear()
    Config.fromfile(CONFIG)
    first = config_cache._parsed.cache_info()
    # model-index.yml and its metafiles, each parsed once for four bases
    assert first.misses > 50
    assert first.hits >= 3 * first.misses
    Config.fromfile(CONFIG)
    again = config_cache._parsed.cache_info()
    assert again.misses == first.misses


def test_configs_load_as_with_mmengines_own_lookup(monkeypatch) -> None:
    from mmengine.fileio import load
    from mmengine.utils import is_installed
    ours = Config.fromfile(CONFIG).pretty_text
    monkeypatch.setattr(mm_utils, 'load', load)
    monkeypatch.setattr(mm_config, 'is_installed', is_installed)
    assert Config.fromfile(CONFIG).pretty_text == ours


def test_other_files_are_read_each_time(tmp_path) -> None:
    path = tmp_path / 'a.json'
    path.write_text('[1]')
    assert config_cache._load(str(path)) == [1]
    path.write_text('[2]')
    assert config_cache._load(str(path)) == [2]


def test_each_text_is_formatted_once_as_yapf_formats_it(monkeypatch) -> None:
    from yapf.yapflib.yapf_api import FormatCode
    cfg = Config.fromfile(CONFIG)
    config_cache._formatted.cache_clear()
    text = cfg.pretty_text
    assert cfg.pretty_text == text
    info = config_cache._formatted.cache_info()
    assert (info.misses, info.hits) == (1, 1)
    # a changed config is formatted anew
    cfg.seed = 12345
    changed = cfg.pretty_text
    assert 'seed = 12345' in changed
    assert config_cache._formatted.cache_info().misses == 2
    # the same texts as mmengine's own formatting, yapf called each time
    monkeypatch.setattr(mm_config, 'FormatCode', FormatCode)
    assert cfg.pretty_text == changed
    assert Config.fromfile(CONFIG).pretty_text == text
