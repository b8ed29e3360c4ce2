"""Tests of the helpers behind tools/train.py and tools/test.py
(convnext_dense/apis/cli.py): the mmdet / mmseg differences they handle."""
from __future__ import annotations

import os.path as osp

import pytest
from mmengine.config import Config

from convnext_dense.apis.cli import (enable_tta, enable_visualization,
                                     load_config)


def config(scope: str, **extra) -> Config:
    return Config(dict(
        default_scope=scope,
        model=dict(type='Detector'),
        default_hooks=dict(visualization=dict(type='VisHook', draw=False)),
        visualizer=dict(type='Visualizer'),
        test_dataloader=dict(dataset=dict(
            type='Repeat', dataset=dict(type='Data', pipeline=['plain']))),
        **extra))


def test_load_config_work_dir_and_overrides(tmp_path):
    path = tmp_path / 'my_config.py'
    path.write_text("model = dict(depth=1)\n")
    cfg = load_config(str(path), {'model.depth': 2}, launcher='pytorch')
    assert cfg.model.depth == 2 and cfg.launcher == 'pytorch'
    assert cfg.work_dir == osp.join('work_dirs', 'my_config')
    assert load_config(str(path), work_dir='here').work_dir == 'here'


def test_visualization_mmdet_writes_to_test_out_dir():
    cfg = config('mmdet')
    enable_visualization(cfg, show_dir='/out/vis')
    assert cfg.default_hooks.visualization == dict(
        type='VisHook', draw=True, test_out_dir='/out/vis')
    assert 'save_dir' not in cfg.visualizer
    # relative to the current directory, not to work_dir/<timestamp>
    enable_visualization(cfg, show_dir='vis')
    assert cfg.default_hooks.visualization.test_out_dir == osp.abspath('vis')


def test_visualization_mmseg_moves_the_visualizer():
    cfg = config('mmseg')
    enable_visualization(cfg, show_dir='/out/vis', show=True, wait_time=0.5)
    assert cfg.default_hooks.visualization == dict(
        type='VisHook', draw=True, show=True, wait_time=0.5)
    assert cfg.visualizer.save_dir == '/out/vis'


def test_visualization_needs_the_hook():
    cfg = config('mmdet')
    del cfg.default_hooks['visualization']
    with pytest.raises(ValueError, match='visualization'):
        enable_visualization(cfg, show_dir='vis')


def test_tta_wraps_the_model_and_swaps_the_innermost_pipeline():
    cfg = config('mmseg', tta_model=dict(type='SegTTAModel'),
                 tta_pipeline=['flipped'])
    enable_tta(cfg)
    assert cfg.model == dict(type='SegTTAModel',
                             module=dict(type='Detector'))
    assert cfg.test_dataloader.dataset.dataset.pipeline == ['flipped']


def test_tta_without_config_entries_is_refused():
    with pytest.raises(ValueError, match='tta_model and tta_pipeline'):
        enable_tta(config('mmdet'))


def test_seg_pictures_are_flattened(tmp_path):
    from convnext_dense.apis.cli import flatten_seg_pictures
    nested = tmp_path / 'vis_data' / 'vis_image'
    nested.mkdir(parents=True)
    for name in ('ADE_val_00000001.jpg_40.png', 'b.png_3.png'):
        (nested / name).write_bytes(b'png')
    assert flatten_seg_pictures(str(tmp_path)) == [
        str(tmp_path / 'ADE_val_00000001.png'), str(tmp_path / 'b.png')]
    assert list(nested.iterdir()) == []
