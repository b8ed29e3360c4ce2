"""Tests of the synthetic COCO generator (convnext_dense/toy_data/toy_coco.py).

The files are read back with pycocotools, independently of the generator:
every mask must decode to pixels that were painted in one flat colour in the
PNG, and its box and area must be those of the decoded mask.
"""
from __future__ import annotations

import filecmp
import json
import os.path as osp

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from convnext_dense.toy_data.toy_coco import CLASSES, generate_toy_coco

NUM_TRAIN, NUM_VAL, SIZE = 16, 8, (96, 80)  # (width, height)


@pytest.fixture(scope='module')
def toy(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp('toy_coco')
    return generate_toy_coco(root, num_train=NUM_TRAIN, num_val=NUM_VAL,
                             image_size=SIZE, seed=3)


def load(summary: dict, split: str) -> COCO:
    coco = COCO()
    with open(summary[split]['ann_file']) as f:
        coco.dataset = json.load(f)
    coco.createIndex()
    return coco


def test_layout_and_counts(toy):
    root = toy['root']
    for split, num in (('train', NUM_TRAIN), ('val', NUM_VAL)):
        assert toy[split]['ann_file'] == osp.join(
            root, 'annotations', f'instances_{split}2017.json')
        coco = load(toy, split)
        assert len(coco.imgs) == num == toy[split]['num_images']
        assert len(coco.anns) == toy[split]['num_annotations']
        assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(
            CLASSES)
        for img in coco.imgs.values():
            assert (img['width'], img['height']) == SIZE
            image = cv2.imread(osp.join(root, f'{split}2017',
                                        img['file_name']))
            assert image.shape == (SIZE[1], SIZE[0], 3)
            assert coco.getAnnIds(imgIds=img['id']), 'every image has a shape'


def test_masks_decode_to_painted_shapes(toy):
    coco = load(toy, 'train')
    stood_out = []
    for ann in coco.anns.values():
        mask = coco.annToMask(ann).astype(bool)
        ys, xs = np.nonzero(mask)
        assert ann['area'] == mask.sum() > 0
        assert ann['bbox'] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                               ys.max() - ys.min() + 1]
        img = coco.imgs[ann['image_id']]
        image = cv2.imread(osp.join(toy['root'], 'train2017',
                                    img['file_name'])).astype(float)
        inside = image[mask]
        # one flat colour plus noise of std 6: a mask that strays onto the
        # textured background or another shape has a far larger spread
        assert inside.std(axis=0).max() < 10, ann
        ring = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5))) > 0
        ring &= ~mask
        stood_out.append(
            np.abs(image[ring].mean(axis=0) - inside.mean(axis=0)).sum() > 30)
    # the pixels just outside differ from the shape (colours are chosen to
    # stand out from the background; a look-alike occluder may not)
    assert np.mean(stood_out) > 0.9


def test_variety(toy):
    coco = load(toy, 'train')
    anns = list(coco.anns.values())
    assert {a['category_id'] for a in anns} == {1, 2, 3}
    # both encodings: polygons for unoccluded shapes, RLE for covered ones
    polygons = [a for a in anns if isinstance(a['segmentation'], list)]
    rles = [a for a in anns if isinstance(a['segmentation'], dict)]
    assert polygons and rles
    assert len(rles) == toy['train']['num_rles']
    per_image = [len(coco.getAnnIds(imgIds=i)) for i in coco.imgs]
    assert min(per_image) == 1 and max(per_image) >= 3
    areas = np.array([a['area'] for a in anns])
    assert areas.max() > 4 * areas.min()
    # a covered shape's box is that of its visible pixels: it lies inside
    # the image and tightly around the decoded mask (checked above)
    for ann in anns:
        x, y, w, h = ann['bbox']
        assert x >= 0 and y >= 0 and x + w <= SIZE[0] and y + h <= SIZE[1]


def test_deterministic(toy, tmp_path):
    again = generate_toy_coco(tmp_path / 'again', num_train=NUM_TRAIN,
                              num_val=NUM_VAL, image_size=SIZE, seed=3)
    for split in ('train', 'val'):
        assert filecmp.cmp(toy[split]['ann_file'], again[split]['ann_file'],
                           shallow=False)
        names = sorted(f['file_name'] for f in load(toy, split).imgs.values())
        match, mismatch, errors = filecmp.cmpfiles(
            toy[split]['img_dir'], again[split]['img_dir'], names,
            shallow=False)
        assert match == names and not mismatch and not errors
    other = generate_toy_coco(tmp_path / 'other', num_train=NUM_TRAIN,
                              num_val=NUM_VAL, image_size=SIZE, seed=4)
    assert not filecmp.cmp(toy['train']['ann_file'],
                           other['train']['ann_file'], shallow=False)


def test_val_split_does_not_depend_on_num_train(toy, tmp_path):
    more = generate_toy_coco(tmp_path, num_train=NUM_TRAIN + 5,
                             num_val=NUM_VAL, image_size=SIZE, seed=3)
    assert filecmp.cmp(toy['val']['ann_file'], more['val']['ann_file'],
                       shallow=False)


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='max_objects'):
        generate_toy_coco(tmp_path, 1, 1, max_objects=0)
    with pytest.raises(ValueError, match='too small'):
        generate_toy_coco(tmp_path, 1, 1, image_size=16)
