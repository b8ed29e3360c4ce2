"""Tests of the toy ADE20K generator (convnext_dense/toy_data/toy_ade.py).

The files are read back with OpenCV and with mmseg's own dataset classes,
independently of the generator: every labelled object must show the colour
its class is drawn in, and mmseg's reduce_zero_label must turn the PNGs into
the training targets ADE20K configs expect (0 -> 255, c -> c - 1).
"""
from __future__ import annotations

import filecmp
import json
import os
import os.path as osp

import cv2
import numpy as np
import pytest

from convnext_dense.toy_data.toy_ade import CLASSES, PALETTE, generate_toy_ade

NUM_TRAIN, NUM_VAL, SIZE = 12, 6, (96, 80)  # (width, height)
SPLITS = {'training': ('train', NUM_TRAIN), 'validation': ('val', NUM_VAL)}

# OpenCV hue (0..179) of each object class, as the generator's docstring
# promises (disc red-orange, box green, triangle cyan-blue, ring orange-
# yellow; ground brown); JPEG, shading and noise move it a few units
HUES = {1: (12, 28), 2: (0, 14), 3: (45, 80), 4: (78, 125), 5: (10, 32)}


@pytest.fixture(scope='module')
def toy(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp('toy_ade')
    return generate_toy_ade(root, num_train=NUM_TRAIN, num_val=NUM_VAL,
                            image_size=SIZE, seed=3)


def pairs(root: str, split: str) -> list[tuple[str, str]]:
    """(image, annotation) paths of one split, by sorted file name."""
    stem, num = SPLITS[split]
    return [(osp.join(root, 'images', split, f'ADE_{stem}_{i:08d}.jpg'),
             osp.join(root, 'annotations', split, f'ADE_{stem}_{i:08d}.png'))
            for i in range(1, num + 1)]


def test_layout_and_counts(toy):
    root = toy['root']
    assert toy['classes'] == CLASSES and len(CLASSES) == 5
    assert toy['palette'] == [list(c) for c in PALETTE]
    assert (toy['num_train'], toy['num_val'], toy['image_size']) == (
        NUM_TRAIN, NUM_VAL, SIZE)
    assert sorted(os.listdir(root)) == ['annotations', 'images',
                                        'toy_ade.json']
    with open(osp.join(root, 'toy_ade.json')) as f:
        manifest = json.load(f)
    assert (manifest['num_train'], manifest['num_val']) == (NUM_TRAIN,
                                                            NUM_VAL)
    assert tuple(manifest['classes']) == CLASSES
    for split in SPLITS:
        expected = pairs(root, split)
        assert sorted(os.listdir(osp.join(root, 'images', split))) == [
            osp.basename(img) for img, _ in expected]
        assert sorted(os.listdir(osp.join(root, 'annotations', split))) == [
            osp.basename(ann) for _, ann in expected]
        for img_path, ann_path in expected:
            image = cv2.imread(img_path, cv2.IMREAD_UNCHANGED)
            label = cv2.imread(ann_path, cv2.IMREAD_UNCHANGED)
            assert image.shape == (SIZE[1], SIZE[0], 3)
            assert image.dtype == np.uint8
            assert label.shape == (SIZE[1], SIZE[0])  # one channel
            assert label.dtype == np.uint8


def test_label_values_follow_reduce_zero_label_convention(toy):
    counts = np.zeros(256, np.int64)
    for split in SPLITS:
        for _, ann_path in pairs(toy['root'], split):
            label = cv2.imread(ann_path, cv2.IMREAD_UNCHANGED)
            assert label.max() <= len(CLASSES), 'values are 0..K only'
            counts += np.bincount(label.ravel(), minlength=256)
    # every class and the ignored "other" (0) occur; ground dominates
    assert (counts[:len(CLASSES) + 1] > 0).all()
    assert counts[1] == counts.max()


def _hue_distance(hue: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Circular distance (OpenCV hue, period 180) from hue to [lo, hi]."""
    below, above = (lo - hue) % 180, (hue - hi) % 180
    inside = (hue >= lo) & (hue <= hi)
    return np.where(inside, 0, np.minimum(below, above))


def test_objects_show_their_class_colour(toy):
    """Pixels labelled c (away from edges) have class c's hue: labels and
    images agree."""
    kernel = np.ones((5, 5), np.uint8)
    checked = np.zeros(len(CLASSES) + 1, np.int64)
    for split in SPLITS:
        for img_path, ann_path in pairs(toy['root'], split):
            hue = cv2.cvtColor(cv2.imread(img_path),
                               cv2.COLOR_BGR2HSV)[..., 0].astype(int)
            label = cv2.imread(ann_path, cv2.IMREAD_UNCHANGED)
            for cls, (lo, hi) in HUES.items():
                inner = cv2.erode((label == cls).astype(np.uint8), kernel)
                if not inner.any():
                    continue
                distance = _hue_distance(hue[inner.astype(bool)], lo, hi)
                assert np.mean(distance <= 6) > 0.9, (
                    f'{img_path}: class {CLASSES[cls - 1]} has hues '
                    f'{np.percentile(hue[inner.astype(bool)], [5, 50, 95])}')
                checked[cls] += inner.sum()
    assert (checked[1:] > 0).all(), 'every class was checked somewhere'


def test_deterministic_and_stable_per_image(toy, tmp_path):
    again = generate_toy_ade(tmp_path / 'again', num_train=NUM_TRAIN,
                             num_val=NUM_VAL, image_size=SIZE, seed=3)
    for split in SPLITS:
        for (a_img, a_ann), (b_img, b_ann) in zip(
                pairs(toy['root'], split), pairs(again['root'], split)):
            assert filecmp.cmp(a_img, b_img, shallow=False)
            assert filecmp.cmp(a_ann, b_ann, shallow=False)
    # image i does not depend on how many images were asked for
    fewer = generate_toy_ade(tmp_path / 'fewer', num_train=2, num_val=1,
                             image_size=SIZE, seed=3)
    for (a_img, a_ann), (b_img, b_ann) in zip(
            pairs(toy['root'], 'training')[:2],
            pairs(fewer['root'], 'training')):
        assert filecmp.cmp(a_ann, b_ann, shallow=False)
    # another seed draws other images
    other = generate_toy_ade(tmp_path / 'other', num_train=2, num_val=1,
                             image_size=SIZE, seed=4)
    ann = pairs(toy['root'], 'training')[0][1]
    other_ann = pairs(other['root'], 'training')[0][1]
    assert not np.array_equal(cv2.imread(ann, cv2.IMREAD_UNCHANGED),
                              cv2.imread(other_ann, cv2.IMREAD_UNCHANGED))


def test_regenerating_fewer_removes_stale_files_only(tmp_path):
    root = tmp_path / 'toy'
    generate_toy_ade(root, num_train=3, num_val=2, image_size=32)
    keep = root / 'images' / 'training' / 'README.txt'
    keep.write_text('not ours')
    generate_toy_ade(root, num_train=1, num_val=1, image_size=32)
    assert sorted(os.listdir(root / 'images' / 'training')) == [
        'ADE_train_00000001.jpg', 'README.txt']
    assert os.listdir(root / 'annotations' / 'validation') == [
        'ADE_val_00000001.png']


@pytest.mark.parametrize('kwargs', [
    dict(num_train=0), dict(num_val=0), dict(image_size=16),
    dict(image_size=(64, 20))])
def test_rejects_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate_toy_ade(tmp_path, **kwargs)


@pytest.mark.parametrize('dataset_type', ['ADE20KDataset', 'BaseSegDataset'])
def test_mmseg_datasets_load_it(toy, dataset_type):
    """mmseg reads the layout as ADE20K (its 150 names) or, as the demo
    config does, as a BaseSegDataset with the toy class names; either way
    the targets are the PNG values minus one, with "other" ignored."""
    pytest.importorskip('mmseg')
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    init_default_scope('mmseg')
    cfg = dict(
        type=dataset_type,
        data_root=toy['root'],
        data_prefix=dict(img_path='images/validation',
                         seg_map_path='annotations/validation'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadAnnotations')])
    if dataset_type == 'BaseSegDataset':
        cfg.update(img_suffix='.jpg', seg_map_suffix='.png',
                   reduce_zero_label=True,
                   metainfo=dict(classes=CLASSES, palette=toy['palette']))
    dataset = DATASETS.build(cfg)
    assert len(dataset) == NUM_VAL
    if dataset_type == 'BaseSegDataset':
        assert dataset.metainfo['classes'] == CLASSES
    for i, (img_path, ann_path) in enumerate(pairs(toy['root'],
                                                   'validation')):
        sample = dataset[i]
        assert sample['img_path'] == img_path
        assert sample['img'].shape == (SIZE[1], SIZE[0], 3)
        raw = cv2.imread(ann_path, cv2.IMREAD_UNCHANGED).astype(int)
        expected = np.where(raw == 0, 255, raw - 1)
        np.testing.assert_array_equal(sample['gt_seg_map'], expected)
