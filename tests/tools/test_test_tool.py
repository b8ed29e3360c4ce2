"""tools/test.py: what it refuses, and data paths it takes as given.

- A checkpoint of another model (a segmentor's for the detection config)
  was evaluated with the missing weights left random: bbox_mAP 0.000,
  exit status 0. Now it is refused with the report tools/infer.py gives
  (missing, unexpected, mis-shaped tensors), unless --allow-partial.
- --data-root takes a path with blanks, which --cfg-options cannot pass
  (mmengine removes every blank from its values).

The demo Cascade Mask R-CNN on 2 generated 64-pixel images; each run a few
seconds.
"""
from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

from mmengine.config import Config  # noqa: E402

from convnext_dense.tasks import build_model  # noqa: E402
from convnext_dense.toy_data import generate_toy_coco  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / 'configs' / 'demo'


@pytest.fixture(scope='module')
def data(tmp_path_factory) -> Path:
    # a blank in the path, as in 'My Drive/coco'
    root = tmp_path_factory.mktemp('toy') / 'my data'
    generate_toy_coco(root, num_train=1, num_val=2, image_size=64, seed=0)
    return root


def checkpoint(folder: Path, config: str) -> Path:
    """A checkpoint of the (untrained) model of a demo config."""
    torch.manual_seed(0)
    model = build_model(Config.fromfile(str(DEMO / config)))
    path = folder / f'{config[:-3]}.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict(epoch=1)), path)
    return path


def run_test(config: str, ckpt: Path, data: Path, tmp_path: Path, *options):
    main = runpy.run_path(str(REPO / 'tools' / 'test.py'),
                          run_name='test')['main']
    return main([str(DEMO / config), str(ckpt), '--work-dir',
                 str(tmp_path / 'work'), '--data-root', f'{data}/',
                 '--cfg-options', 'test_dataloader.num_workers=0',
                 'test_dataloader.persistent_workers=False', *options])


@pytest.mark.slow
def test_checkpoint_of_another_model_is_refused(data, tmp_path):
    seg = checkpoint(tmp_path, 'upernet_convnext_demo.py')
    with pytest.raises(SystemExit) as info:
        run_test('cascade_convnext_demo.py', seg, data, tmp_path)
    message = str(info.value)
    assert message.startswith(
        f'error: checkpoint {seg} does not match the model of the config (')
    # (the demos' backbones differ in width and depth too)
    assert '(142 tensors in the file, 226 in the model): 166 tensors ' \
        'missing in the file: backbone.stages.2.1.gamma;' in message
    assert '| 82 tensors not in the model: decode_head.conv_seg.weight;' \
        in message
    assert '| 60 tensors with another shape: backbone.downsample_layers.0.' \
        '0.weight: file (16, 3, 4, 4) vs model (32, 3, 4, 4);' in message
    assert message.endswith('(tools/test.py --allow-partial loads the '
                            'tensors that fit and leaves the others as '
                            'initialised.)')

    # on request it is evaluated anyway (and scores next to nothing)
    metrics = run_test('cascade_convnext_demo.py', seg, data, tmp_path,
                   '--allow-partial')
    assert metrics['coco/bbox_mAP'] < 0.01


@pytest.mark.slow
def test_data_root_with_blanks(data, tmp_path):
    det = checkpoint(tmp_path, 'cascade_convnext_demo.py')
    metrics = run_test('cascade_convnext_demo.py', det, data, tmp_path)
    assert 'coco/bbox_mAP' in metrics


def test_missing_checkpoint_is_one_line(tmp_path):
    # it used to be a traceback after 756 lines of config dump
    main = runpy.run_path(str(REPO / 'tools' / 'test.py'),
                          run_name='test')['main']
    with pytest.raises(SystemExit) as info:
        main([str(DEMO / 'cascade_convnext_demo.py'),
              str(tmp_path / 'missing.pth')])
    assert info.value.code == (
        f'error: checkpoint not found: {tmp_path}/missing.pth')


def test_unknown_device_is_one_line(tmp_path):
    main = runpy.run_path(str(REPO / 'tools' / 'test.py'),
                          run_name='test')['main']
    with pytest.raises(SystemExit) as info:
        main([str(DEMO / 'cascade_convnext_demo.py'), 'x.pth', '--device',
              'gpu0'])
    assert info.value.code == (
        "error: --device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu0'")


@pytest.mark.slow
def test_work_dir_stands_for_config_and_checkpoint(data, tmp_path):
    # as tools/infer.py and tools/export_onnx.py take them
    work_dir = tmp_path / 'trained'
    work_dir.mkdir()
    config = (DEMO / 'cascade_convnext_demo.py').read_text().replace(
        "_base_ = '../", f"_base_ = '{REPO}/configs/")
    (work_dir / 'cascade_convnext_demo.py').write_text(config)
    ckpt = checkpoint(work_dir, 'cascade_convnext_demo.py')
    (work_dir / 'last_checkpoint').write_text(str(ckpt))
    main = runpy.run_path(str(REPO / 'tools' / 'test.py'),
                          run_name='test')['main']
    metrics = main([str(work_dir), str(work_dir), '--device', 'cpu',
                    '--work-dir', str(tmp_path / 'work'), '--data-root',
                    f'{data}/', '--cfg-options',
                    'test_dataloader.num_workers=0',
                    'test_dataloader.persistent_workers=False'])
    assert 'coco/bbox_mAP' in metrics
