"""Config paths and ``--cfg-options`` keys are checked in every tool.

A typo in a ``--cfg-options`` key (``score_thres`` for ``score_thr``) used to
be merged as a new key nothing reads, so the run went on with the old
value; a typo in a config path gave a traceback in train, test and
get_flops. Now both stop in one line naming the nearest existing key/path.
"""
from __future__ import annotations

import os
import runpy
from pathlib import Path

import pytest
from mmengine.config import Config
from PIL import Image

from convnext_dense.apis.config_args import (ConfigNotFoundError,
                                             UnknownConfigKeyError,
                                             check_cfg_options, find_config)

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / 'configs' / 'demo' / 'cascade_convnext_demo.py')


@pytest.fixture(scope='module')
def cfg() -> Config:
    return Config.fromfile(DEMO)


def test_misspelt_key_is_refused_with_the_nearest(cfg):
    with pytest.raises(UnknownConfigKeyError) as info:
        check_cfg_options(cfg, {'model.test_cfg.rcnn.score_thres': 0.5})
    assert str(info.value) == (
        '--cfg-options model.test_cfg.rcnn.score_thres: '
        'model.test_cfg.rcnn.score_thres is not in the config; did you mean '
        'model.test_cfg.rcnn.score_thr? (--cfg-new-keys adds keys the '
        'config does not have)')


def test_misspelt_key_high_up(cfg):
    with pytest.raises(UnknownConfigKeyError,
                       match=r'modle is not in the config; did you mean '
                       r'model\?'):
        check_cfg_options(cfg, {'modle.backbone.arch': 'small'})


def test_key_with_nothing_near_lists_the_level(cfg):
    with pytest.raises(UnknownConfigKeyError,
                       match=r'model.backbone.zzz is not in the config; '
                       r'model.backbone has: .*arch'):
        check_cfg_options(cfg, {'model.backbone.zzz': 1})


def test_list_indices(cfg):
    check_cfg_options(cfg, {'model.roi_head.bbox_head.2.num_classes': 3})
    with pytest.raises(UnknownConfigKeyError,
                       match='model.roi_head.bbox_head is a list of 3'):
        check_cfg_options(cfg, {'model.roi_head.bbox_head.3.num_classes': 3})


def test_existing_keys_and_new_keys_when_allowed(cfg):
    check_cfg_options(cfg, {'model.test_cfg.rcnn.score_thr': 0.5,
                            'train_cfg.max_epochs': 1})
    check_cfg_options(cfg, {'model.backbone.not_a_key': 1},
                      allow_new_keys=True)


def test_config_path_typo_names_the_nearest():
    with pytest.raises(ConfigNotFoundError) as info:
        find_config(str(REPO / 'configs' / 'cascade_convnext_tt.py'))
    assert str(info.value) == (
        f"config not found: {REPO}/configs/cascade_convnext_tt.py; did you "
        f'mean {REPO}/configs/cascade_convnext_t.py?')


def test_config_path_typo_in_a_missing_folder(monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(ConfigNotFoundError) as info:
        find_config('config/upernet_convnext_s.py')
    assert str(info.value) == (
        'config not found: config/upernet_convnext_s.py; did you mean '
        'configs/upernet_convnext_s.py?')


TYPO = str(REPO / 'configs' / 'mask_rcnn_convnext_tt.py')
NEAR = str(REPO / 'configs' / 'mask_rcnn_convnext_t.py')


@pytest.mark.parametrize('tool,argv', [
    ('train.py', [TYPO]),
    ('test.py', [TYPO, 'ckpt.pth']),
    ('infer.py', [TYPO, 'ckpt.pth', 'IMAGE', '--out-dir', 'out']),
    ('export_onnx.py', [TYPO, 'ckpt.pth', '--out', 'm.onnx']),
    ('analysis/get_flops.py', [TYPO]),
])
def test_every_tool_names_a_config_typo_in_one_line(tool, argv, tmp_path,
                                                     monkeypatch):
    monkeypatch.chdir(tmp_path)
    if 'IMAGE' in argv:  # infer.py checks its input first
        image = tmp_path.parent / 'in.png'
        Image.new('RGB', (8, 8)).save(image)
        argv = [str(image) if a == 'IMAGE' else a for a in argv]
    main = runpy.run_path(str(REPO / 'tools' / tool), run_name='t')['main']
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == (
        f'error: config not found: {TYPO}; did you mean {NEAR}?')
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize('tool,argv', [
    ('train.py', [DEMO]),
    ('test.py', [DEMO, 'ckpt.pth']),
    ('demo.py', ['det']),
])
def test_every_tool_refuses_a_misspelt_cfg_option(tool, argv, tmp_path,
                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    main = runpy.run_path(str(REPO / 'tools' / tool), run_name='t')['main']
    with pytest.raises(SystemExit) as info:
        main(argv + ['--cfg-options', 'train_cfg.max_epoch=1'])
    assert info.value.code.startswith(
        '--cfg-options train_cfg.max_epoch: train_cfg.max_epoch is not in '
        'the config; did you mean train_cfg.max_epochs?'.join(
            ('error: ', '')))


def test_keys_under_a_value_left_at_none_fill_it_in():
    """A backbone's ``init_cfg=None`` is a key the config has: giving it a
    checkpoint is not a typo. Under a number it still is."""
    cfg = Config(dict(model=dict(backbone=dict(init_cfg=None, depth=3))))
    check_cfg_options(cfg, {'model.backbone.init_cfg.type': 'Pretrained',
                            'model.backbone.init_cfg.checkpoint': 'x.pth'})
    with pytest.raises(UnknownConfigKeyError, match='is a int, not a dict'):
        check_cfg_options(cfg, {'model.backbone.depth.value': 3})
