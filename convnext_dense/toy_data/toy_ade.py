"""A small, deterministic dataset in the ADE20K layout, for demos and tests.

ADE20K (``ADEChallengeData2016``) stores RGB images as JPEG and labels as
single-channel PNG under::

    images/{training,validation}/ADE_{train,val}_XXXXXXXX.jpg
    annotations/{training,validation}/ADE_{train,val}_XXXXXXXX.png

Its label 0 means "other" and is ignored: loaders use ``reduce_zero_label``,
which maps 0 to 255 (ignore) and class ``c`` (1..150) to ``c - 1``. The toy
set keeps that convention with ``len(CLASSES)`` classes, so the same
pipeline (``LoadAnnotations(reduce_zero_label=True)``, ``IoUMetric``) runs
on it unchanged.

Each image is a textured ``ground`` with clutter of class "other" (label 0,
ignored) and a few overlapping objects. An object's class is told apart by
shape and by colour/texture together: ``disc`` and ``ring`` share warm hues
(a ring differs by its hole), ``box`` and ``triangle`` cool ones (and a box
is striped). Sizes, aspect ratios, rotations, colours and lighting vary.

Every image is drawn from its own random stream seeded by ``(seed, split,
index)``, so the output is byte-identical across runs and image ``i`` does not
depend on how many images are requested.
"""
from __future__ import annotations

import json
import os
import os.path as osp
from typing import Sequence

import cv2
import numpy as np

from convnext_dense.fileio import atomic_open

# annotation value c (1..5) is CLASSES[c - 1]; 0 is "other" (ignored)
CLASSES: tuple[str, ...] = ('ground', 'disc', 'box', 'triangle', 'ring')
# RGB display colours, one per class (mmseg's visualizer takes RGB)
PALETTE: tuple[tuple[int, int, int], ...] = (
    (140, 110, 70), (220, 40, 40), (40, 180, 60), (50, 80, 220),
    (240, 200, 30))

SPLITS = {'training': 'train', 'validation': 'val'}
# written after every image: the set under a root is complete once it exists
MANIFEST = 'toy_ade.json'

# (hue range, saturation range, value range) in OpenCV's HSV (H in 0..179);
# the ranges of disc/ring and of box/triangle touch, so colour alone is not
# always enough
_GROUND_HSV = ((12, 28), (50, 110), (90, 160))
_OBJECT_HSV = {
    2: ((0, 14), (150, 255), (150, 255)),  # disc: red to orange
    3: ((45, 80), (120, 255), (110, 230)),  # box: green, striped
    4: ((78, 125), (120, 255), (110, 230)),  # triangle: cyan to blue
    5: ((10, 32), (150, 255), (170, 255)),  # ring: orange to yellow
}


def _hsv_color(rng: np.random.Generator,
               ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    """One RGB colour (float32, 0..255) drawn uniformly from HSV ranges."""
    hsv = np.array([[[rng.integers(lo, hi + 1) for lo, hi in ranges]]],
                   dtype=np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _smooth_noise(rng: np.random.Generator, h: int, w: int,
                  cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1] of shape (h, w): a bicubic upsampled
    ``cells x cells`` random grid."""
    grid = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    return np.clip(cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC),
                   -1, 1)


def _object_mask(rng: np.random.Generator, label: int, h: int,
                 w: int) -> np.ndarray:
    """Boolean (h, w) mask of one object of the given class, placed at
    random (it may leave the frame)."""
    size = rng.uniform(0.10, 0.28) * min(h, w)  # outer radius in pixels
    cx, cy = rng.uniform(0, w), rng.uniform(0, h)
    angle = rng.uniform(0, 180)
    mask = np.zeros((h, w), np.uint8)
    center = (int(round(cx)), int(round(cy)))
    if label in (2, 5):  # disc and ring: ellipses of aspect 0.6..1
        axes = (int(round(size)), int(round(size * rng.uniform(0.6, 1.0))))
        cv2.ellipse(mask, center, axes, angle, 0, 360, 1, thickness=-1)
        if label == 5:  # ring: punch a concentric hole of 45..65%
            inner = rng.uniform(0.45, 0.65)
            hole = (max(1, int(axes[0] * inner)), max(1, int(axes[1] * inner)))
            cv2.ellipse(mask, center, hole, angle, 0, 360, 0, thickness=-1)
    elif label == 3:  # box: rotated rectangle of aspect 0.5..1
        box = ((cx, cy), (2 * size, 2 * size * rng.uniform(0.5, 1.0)), angle)
        corners = cv2.boxPoints(box)
        cv2.fillPoly(mask, [np.round(corners).astype(np.int32)], 1)
    elif label == 4:  # triangle: three corners on a circle, jittered
        start = rng.uniform(0, 2 * np.pi)
        thetas = start + np.array([0, 2, 4]) * np.pi / 3 + rng.uniform(
            -0.35, 0.35, 3)
        pts = np.stack([cx + size * np.cos(thetas),
                        cy + size * np.sin(thetas)], axis=1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    else:
        raise ValueError(f'no shape for label {label}')
    return mask.astype(bool)


def _draw_sample(rng: np.random.Generator, h: int,
                 w: int) -> tuple[np.ndarray, np.ndarray]:
    """One (RGB uint8 (h, w, 3) image, uint8 (h, w) label map) pair."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    # ground (label 1): a brownish colour modulated by two noise octaves
    ground = _hsv_color(rng, _GROUND_HSV)
    texture = (0.6 * _smooth_noise(rng, h, w, 4) +
               0.4 * _smooth_noise(rng, h, w, 16))
    image = ground[None, None, :] * (1 + 0.25 * texture[..., None])
    label = np.ones((h, w), np.uint8)

    # clutter of class "other" (label 0): grey-ish random polygons
    for _ in range(rng.integers(0, 4)):
        n = rng.integers(3, 7)
        pts = np.stack([rng.uniform(0, w, n), rng.uniform(0, h, n)], axis=1)
        poly = np.zeros((h, w), np.uint8)
        cv2.fillPoly(poly, [np.round(pts).astype(np.int32)], 1)
        region = poly.astype(bool)
        image[region] = rng.uniform(60, 200) + rng.uniform(-20, 20, 3)
        label[region] = 0

    # 2..5 objects, later ones painted over earlier ones
    for _ in range(rng.integers(2, 6)):
        cls = int(rng.integers(2, len(CLASSES) + 1))
        mask = _object_mask(rng, cls, h, w)
        color = _hsv_color(rng, _OBJECT_HSV[cls])
        # a gentle linear shading across the object
        gx, gy = rng.uniform(-1, 1, 2) / max(h, w)
        shade = 1 + 0.3 * (gx * (xx - w / 2) + gy * (yy - h / 2))
        paint = color[None, None, :] * shade[..., None]
        if cls == 3:  # stripes of period 6..10 px at the box's own angle
            period, theta = rng.uniform(6, 10), rng.uniform(0, np.pi)
            phase = (xx * np.cos(theta) + yy * np.sin(theta)) / period
            stripes = (np.floor(phase) % 2).astype(np.float32)
            paint = paint * (0.55 + 0.45 * stripes[..., None])
        image[mask] = paint[mask]
        label[mask] = cls

    # global lighting and sensor noise
    image = image * rng.uniform(0.8, 1.2) + rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), label


def generate_toy_ade(root: str | os.PathLike,
                     num_train: int = 240,
                     num_val: int = 40,
                     image_size: int | tuple[int, int] = 128,
                     seed: int = 0) -> dict:
    """Write a toy dataset in the ADE20K layout under ``root``.

    ``toy_ade.json`` (classes, palette, counts, size, seed) is written
    last, so its presence means the set is complete.

    Files from an earlier call that this call does not rewrite (e.g. after
    asking for fewer images) are removed, so that the folders hold exactly
    the requested images; nothing else under ``root`` is touched.

    Args:
        root: Dataset root; ``images/`` and ``annotations/`` are created in
            it.
        num_train: Number of training images. Defaults to 240.
        num_val: Number of validation images. Defaults to 40.
        image_size: Image side, or ``(width, height)`` (mmcv's order).
            Defaults to 128.
        seed: Seed of every random stream. Defaults to 0.

    Returns:
        ``dict(root, classes, palette, num_train, num_val, image_size)``
        with ``image_size`` as ``(width, height)``;
        ``classes[c - 1]`` is the class of annotation value ``c`` and value 0
        is "other" (ignored under ``reduce_zero_label``).
    """
    if num_train < 1 or num_val < 1:
        raise ValueError(f'need at least one image per split; got '
                         f'num_train={num_train}, num_val={num_val}')
    w, h = ((image_size, image_size) if isinstance(image_size, int) else
            tuple(image_size))
    if min(h, w) < 32:
        raise ValueError(f'image_size must be at least 32 px: {image_size}')
    root = osp.abspath(os.fspath(root))
    counts = {'training': num_train, 'validation': num_val}
    for split_index, (split, stem) in enumerate(SPLITS.items()):
        img_dir = osp.join(root, 'images', split)
        ann_dir = osp.join(root, 'annotations', split)
        os.makedirs(img_dir, exist_ok=True)
        os.makedirs(ann_dir, exist_ok=True)
        names = [f'ADE_{stem}_{i + 1:08d}' for i in range(counts[split])]
        keep = set(names)
        for folder, suffix in ((img_dir, '.jpg'), (ann_dir, '.png')):
            for file in os.listdir(folder):
                base, ext = osp.splitext(file)
                if (ext == suffix and base.startswith(f'ADE_{stem}_')
                        and base not in keep):
                    os.remove(osp.join(folder, file))
        for i, name in enumerate(names):
            rng = np.random.default_rng((seed, split_index, i))
            image, label = _draw_sample(rng, h, w)
            # OpenCV writes BGR; mmseg reads the JPEG back as BGR and its
            # preprocessor converts to RGB (bgr_to_rgb=True)
            cv2.imwrite(osp.join(img_dir, name + '.jpg'),
                        cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(osp.join(ann_dir, name + '.png'), label)
    info = dict(root=root, classes=CLASSES,
                palette=[list(c) for c in PALETTE], num_train=num_train,
                num_val=num_val, image_size=(w, h))
    # written last, whole or not at all: its presence means the set is
    # complete
    with atomic_open(osp.join(root, MANIFEST), 'w') as f:
        json.dump(dict(info, root=None, seed=seed), f, indent=1)
    return info
