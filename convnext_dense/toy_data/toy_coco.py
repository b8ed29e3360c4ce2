"""A small synthetic instance-segmentation set in the COCO layout.

It lets the detection configs run end to end (train, COCO box/mask AP,
visualisation) on a CPU with no downloaded data::

    root/annotations/instances_train2017.json
    root/annotations/instances_val2017.json
    root/train2017/000000000001.png ...
    root/val2017/000000000001.png ...

Each image shows a few filled shapes (rectangles, ellipses, triangles) of
random colour, size and rotation on a textured, noisy background. Shapes may
overlap; an annotation describes the *visible* part of its shape, so its box
is the tight box of the visible pixels. A shape that nothing covers is stored
as a polygon (the vertices it was drawn from), a partly covered one as a
compressed RLE of its visible mask: both encodings that COCO files use occur.

Everything is drawn from a seeded ``numpy`` generator per split, so the same
arguments always write the same files, and the val split does not depend on
``num_train``.
"""
from __future__ import annotations

import json
import os
import os.path as osp
from typing import Sequence

import cv2
import numpy as np
from pycocotools import mask as mask_utils

CLASSES: tuple[str, ...] = ('rectangle', 'ellipse', 'triangle')
SPLITS: tuple[str, ...] = ('train', 'val')

# an earlier shape must keep at least this fraction of its pixels visible
# when later shapes are drawn over it; otherwise the new shape is redrawn
MIN_VISIBLE_FRACTION = 0.5
# shape size (its longer side) as a fraction of the shorter image side
SIZE_RANGE = (0.25, 0.6)
MAX_TRIES = 30


def _background(rng: np.random.Generator, height: int,
                width: int) -> np.ndarray:
    """A (H, W, 3) uint8 texture: smooth colour blobs plus pixel noise."""
    # low-frequency colour field: a coarse random grid, bicubically upsampled
    coarse = rng.uniform(60, 190, size=(4, 4, 3)).astype(np.float32)
    field = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    # stripes of random orientation and frequency: texture a box regressor
    # has to look past
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(6, 20)
    stripes = 15 * np.sin(2 * np.pi * (xs * np.cos(angle) + ys * np.sin(angle))
                          / period)
    noise = rng.normal(0, 10, size=(height, width, 3))
    image = field + stripes[..., None] + noise
    return np.clip(image, 0, 255).astype(np.uint8)


def _shape_polygon(rng: np.random.Generator, category: str,
                   center: tuple[float, float], size: float) -> np.ndarray:
    """Vertices (K, 2) in pixels (x, y) of one shape of longer side ~size."""
    cx, cy = center
    angle = rng.uniform(0, 360)
    if category == 'ellipse':
        axes = (int(size / 2), int(size / 2 * rng.uniform(0.5, 1.0)))
        return cv2.ellipse2Poly((int(cx), int(cy)), axes, int(angle), 0, 360,
                                delta=10).astype(np.float64)
    if category == 'rectangle':
        half_w, half_h = size / 2, size / 2 * rng.uniform(0.5, 1.0)
        corners = np.array([[-half_w, -half_h], [half_w, -half_h],
                            [half_w, half_h], [-half_w, half_h]])
        # mostly upright: a rectangle rotated by 45 degrees looks like a
        # diamond, which makes the class harder than the demo needs
        angle = rng.uniform(-20, 20)
    elif category == 'triangle':
        # isosceles, base of random width, any rotation
        half_base = size / 2 * rng.uniform(0.6, 1.0)
        corners = np.array([[0., -size / 2], [half_base, size / 2],
                            [-half_base, size / 2]])
    else:
        raise ValueError(f'unknown shape {category!r}; choose one of '
                         f'{CLASSES}')
    theta = np.deg2rad(angle)
    rotation = np.array([[np.cos(theta), -np.sin(theta)],
                         [np.sin(theta), np.cos(theta)]])
    return np.round(corners @ rotation.T + [cx, cy])


def _coco_polygon(polygon: np.ndarray) -> list[float]:
    """Flat [x0, y0, x1, y1, ...] of a (K, 2) pixel polygon.

    COCO's continuous coordinates put pixel centres at +0.5.
    """
    return (polygon + 0.5).ravel().tolist()


def _fill(polygon: np.ndarray, height: int, width: int) -> np.ndarray:
    """Rasterise a polygon into an (H, W) bool mask.

    pycocotools does the rasterising, so that a stored polygon decodes to
    exactly the pixels that were painted.
    """
    rle = mask_utils.frPyObjects([_coco_polygon(polygon)], height, width)
    return mask_utils.decode(rle)[..., 0].astype(bool)


def _pick_color(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random RGB colour that stands out from the pixels it covers."""
    mean = under.reshape(-1, 3).mean(axis=0)
    color = rng.integers(0, 256, size=3)
    for _ in range(MAX_TRIES):
        if np.abs(color - mean).sum() > 200:
            break
        color = rng.integers(0, 256, size=3)
    return color


def _draw_image(rng: np.random.Generator, height: int, width: int,
                max_objects: int) -> tuple[np.ndarray, list[dict]]:
    """Draw one image; returns it and its shapes (category, polygon, mask)."""
    image = _background(rng, height, width).astype(np.float64)
    shapes: list[dict] = []
    short_side = min(height, width)
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _ in range(MAX_TRIES):
            label = int(rng.integers(len(CLASSES)))
            size = rng.uniform(*SIZE_RANGE) * short_side
            # keep the whole shape inside the image
            center = (rng.uniform(size / 2, width - size / 2),
                      rng.uniform(size / 2, height - size / 2))
            polygon = _shape_polygon(rng, CLASSES[label], center, size)
            full = _fill(polygon, height, width)
            # reject a shape that would hide too much of an earlier one
            if full.sum() >= 16 and all(
                    (shape['visible'] & ~full).sum()
                    >= MIN_VISIBLE_FRACTION * shape['full'].sum()
                    for shape in shapes):
                break
        else:
            continue  # no room left in this image
        for shape in shapes:
            shape['visible'] &= ~full
        color = _pick_color(rng, image[full])
        # a little texture on the shape too: it is not a flat colour
        image[full] = color + rng.normal(0, 6, size=(int(full.sum()), 3))
        shapes.append(
            dict(label=label, polygon=polygon, full=full,
                 visible=full.copy()))
    return np.clip(image, 0, 255).astype(np.uint8), shapes


def _annotation(shape: dict, ann_id: int, image_id: int) -> dict:
    """COCO annotation of one shape's visible part."""
    visible = shape['visible']
    ys, xs = np.nonzero(visible)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    if (visible == shape['full']).all():
        # unoccluded: the polygon it was painted from
        segmentation = [_coco_polygon(shape['polygon'])]
    else:
        rle = mask_utils.encode(np.asfortranarray(visible.astype(np.uint8)))
        segmentation = dict(
            size=[int(s) for s in rle['size']],
            counts=rle['counts'].decode('ascii'))
    return dict(
        id=ann_id,
        image_id=image_id,
        category_id=shape['label'] + 1,
        bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
        area=float(visible.sum()),
        iscrowd=0,
        segmentation=segmentation)


def _image_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """(width, height) from an int or a (width, height) pair."""
    if isinstance(image_size, int):
        return image_size, image_size
    width, height = (int(s) for s in image_size)
    return width, height


def generate_toy_coco(root: str | os.PathLike,
                      num_train: int = 200,
                      num_val: int = 50,
                      image_size: int | Sequence[int] = 128,
                      max_objects: int = 4,
                      seed: int = 0) -> dict:
    """Write a synthetic COCO-format instance-segmentation set under root.

    Args:
        root: Output directory; ``annotations/``, ``train2017/`` and
            ``val2017/`` are (over)written inside it.
        num_train: Training images. Defaults to 200.
        num_val: Validation images. Defaults to 50.
        image_size: Image side, or (width, height). Defaults to 128.
        max_objects: Most shapes per image (at least one). Defaults to 4.
        seed: Seed of the generator; each split draws from its own stream.
            Defaults to 0.

    Returns:
        ``dict(root=..., classes=CLASSES, train=..., val=...)`` where each
        split is ``dict(ann_file, img_dir, num_images, num_annotations,
        num_polygons, num_rles)``.
    """
    if max_objects < 1:
        raise ValueError(f'max_objects must be at least 1: {max_objects}')
    width, height = _image_size(image_size)
    if min(width, height) < 32:
        raise ValueError(f'images of {width}x{height} are too small for '
                         "mmdet's default min_size=32 filter")
    root = osp.abspath(root)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    categories = [dict(id=i + 1, name=name, supercategory='shape')
                  for i, name in enumerate(CLASSES)]
    summary: dict = dict(root=root, classes=CLASSES)
    for split_index, (split, num_images) in enumerate(
            zip(SPLITS, (num_train, num_val))):
        rng = np.random.default_rng([seed, split_index])
        img_dir = osp.join(root, f'{split}2017')
        os.makedirs(img_dir, exist_ok=True)
        images, annotations = [], []
        for image_id in range(1, num_images + 1):
            image, shapes = _draw_image(rng, height, width, max_objects)
            file_name = f'{image_id:012d}.png'
            # cv2 writes BGR
            cv2.imwrite(osp.join(img_dir, file_name), image[..., ::-1])
            images.append(
                dict(id=image_id, file_name=file_name, width=width,
                     height=height))
            for shape in shapes:
                annotations.append(
                    _annotation(shape, len(annotations) + 1, image_id))
        ann_file = osp.join(root, 'annotations', f'instances_{split}2017.json')
        with open(ann_file, 'w') as f:
            json.dump(
                dict(images=images, annotations=annotations,
                     categories=categories), f)
        num_rles = sum(isinstance(a['segmentation'], dict)
                       for a in annotations)
        summary[split] = dict(
            ann_file=ann_file,
            img_dir=img_dir,
            num_images=num_images,
            num_annotations=len(annotations),
            num_polygons=len(annotations) - num_rles,
            num_rles=num_rles)
    return summary
