"""Bad segmentation label maps through tools/train.py on the UperNet demo.

A label map saved as RGB, or holding values beyond the classes, used to
fail in the middle of training without naming the file. Now
``check_annotations`` reads the label maps before anything is built and
names the file; one its sample misses is named by the ``CheckSegLabels``
step added after ``LoadAnnotations`` when training meets it.

2 generated 64-pixel images (5 classes, reduce_zero_label: valid values
0..5), one iteration.
"""
from __future__ import annotations

import runpy
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip('mmseg')

from convnext_dense.toy_data.toy_ade import generate_toy_ade  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / 'configs' / 'demo' / 'upernet_convnext_demo.py')


@pytest.fixture(scope='module')
def toy_ade(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('toy_ade')
    generate_toy_ade(root, num_train=2, num_val=1, image_size=64, seed=0)
    return root


@pytest.fixture
def data(toy_ade, tmp_path) -> Path:
    return Path(shutil.copytree(toy_ade, tmp_path / 'data'))


def train(data: Path, work_dir: Path) -> None:
    main = runpy.run_path(str(REPO / 'tools' / 'train.py'),
                          run_name='train')['main']
    main([DEMO, '--work-dir', str(work_dir), '--data-root', str(data),
          '--cfg-options', 'train_dataloader.num_workers=0',
          'train_dataloader.persistent_workers=False',
          'train_dataloader.batch_size=2', 'val_dataloader.num_workers=0',
          'val_dataloader.persistent_workers=False',
          'train_cfg.max_iters=1', 'train_cfg.val_interval=1'])


def label_file(data: Path) -> Path:
    return sorted((data / 'annotations' / 'training').glob('*.png'))[-1]


def test_rgb_label_map(data, tmp_path):
    label = label_file(data)
    gray = np.asarray(Image.open(label))
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(label)
    with pytest.raises(ValueError) as info:
        train(data, tmp_path / 'work')
    assert str(info.value) == (
        f'label map {label} has shape (64, 64, 3): labels must be '
        'single-channel class indices (a grayscale or palette PNG), not '
        'colours (RGB)')
    assert not (tmp_path / 'work').exists()  # refused before the Runner


@pytest.mark.parametrize('sampled', [True, False])
def test_label_values_out_of_range(data, tmp_path, monkeypatch, sampled):
    label = label_file(data)
    values = np.asarray(Image.open(label)).copy()
    values[:4, :4] = 9  # 5 classes: the file's valid values are 0..5
    Image.fromarray(values).save(label)
    if not sampled:  # as if the sample of a large set missed this file
        import convnext_dense.engine as engine
        monkeypatch.setattr(engine, 'check_annotations', lambda *a: None)
    with pytest.raises(ValueError) as info:
        train(data, tmp_path / 'work')
    # after LoadAnnotations's reduce_zero_label, 9 is 8 and the range 0..4
    expected = ('[9] outside 0..5 (and 255, ignored): 5 classes, '
                'reduce_zero_label=True' if sampled else
                '[8] outside 0..4 (and 255, ignored): 5 classes')
    assert f'label map {label} holds values {expected}' in str(info.value)
