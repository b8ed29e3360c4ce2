"""What the annotation files and label maps hold, checked before training.

:mod:`.data_checks` checks that paths exist; this module reads them. Found
on toy data, each with the message a user got before:

- a truncated COCO annotation file: ``json.decoder.JSONDecodeError:
  Expecting ',' delimiter: line 1 column 9001`` from pycocotools, naming no
  file;
- boxes of zero or negative size, and category ids that are not among the
  classes, are dropped by mmdet's ``CocoDataset`` without a word, even when
  every box of the set is dropped;
- a segmentation label map saved as RGB, or with values beyond the classes,
  fails in the middle of training (in a transform or the loss: "Target 7
  is out of bounds") without naming the file.

:func:`check_annotations` parses every local ``.json`` annotation file of
the run (naming the file and the config key if it does not parse), counts
the boxes mmdet would drop and warns once per file with the counts, refuses
a training set left with no box, and reads the label maps of segmentation
datasets (all of them, or an evenly spaced sample of ``max_label_maps``).
:func:`check_annotations` also checks that every file the run will read
exists (:func:`~.data_checks.check_listed_files`): the COCO images the
annotation file names, and the label map of every segmentation image.
:func:`add_label_checks` puts :class:`CheckSegLabels` after every
``LoadAnnotations`` of a segmentation training pipeline, so a bad label map
outside the sample is named when training meets it.
"""
from __future__ import annotations

import json
import logging
import os
import os.path as osp
from typing import Optional, Sequence

import numpy as np
from mmcv.transforms import BaseTransform
from mmengine.config import Config
from mmengine.logging import print_log

from ..registry import TRANSFORMS
from .data_checks import check_listed_files, dataset_cfgs

IGNORE_INDEX = 255  # mmseg's default ignore_index


def _read_json(path: str, where: str) -> object:
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is one
        raise ValueError(
            f"{where}: '{path}' is not valid JSON ({err}); truncated by an "
            'interrupted download or copy?') from None


def _dataset_class(cfg: Config, dataset: dict):
    """The registered class a dataset config builds, or None."""
    scope = cfg.get('default_scope')
    if scope not in ('mmdet', 'mmseg') or not isinstance(
            dataset.get('type'), str):
        return None
    if scope == 'mmdet':
        from mmdet.registry import DATASETS
    else:
        from mmseg.registry import DATASETS
    return DATASETS.get(dataset['type'].split('.')[-1])


def _classes(cfg: Config, dataset: dict) -> Optional[tuple]:
    classes = (dataset.get('metainfo') or {}).get('classes')
    if classes is None:
        cls = _dataset_class(cfg, dataset)
        classes = getattr(cls, 'METAINFO', {}).get('classes')
    return tuple(classes) if classes else None


def count_dropped_boxes(coco: dict, classes: Optional[Sequence[str]]
                        ) -> dict[str, int]:
    """How many annotations mmdet 3.3's ``CocoDataset.parse_data_info``
    drops, by reason (the same rules, in the same order)."""
    names = {cat['id']: cat['name'] for cat in coco.get('categories', [])}
    known = {cid for cid, name in names.items()
             if classes is None or name in classes}
    images = {img['id']: img for img in coco.get('images', [])}
    counts = dict(total=0, empty=0, unknown_category=0)
    for ann in coco.get('annotations', []):
        counts['total'] += 1
        x1, y1, w, h = ann['bbox']
        img = images.get(ann['image_id'], {})
        inter_w = max(0, min(x1 + w, img.get('width', x1 + w)) - max(x1, 0))
        inter_h = max(0, min(y1 + h, img.get('height', y1 + h)) - max(y1, 0))
        if inter_w * inter_h == 0 or ann.get('area', 1) <= 0 or w < 1 \
                or h < 1:
            counts['empty'] += 1
        elif ann['category_id'] not in known:
            counts['unknown_category'] += 1
    return counts


def _check_coco(coco: dict, path: str, where: str, classes, train: bool
                ) -> None:
    counts = count_dropped_boxes(coco, classes)
    dropped = counts['empty'] + counts['unknown_category']
    if not dropped:
        return
    message = (
        f"{where}: '{path}': mmdet drops {dropped} of its {counts['total']} "
        f"boxes: {counts['empty']} of zero or negative width, height or "
        f"area (or outside their image), {counts['unknown_category']} with "
        'a category id not among the classes '
        f'({len(classes) if classes else "all"} classes: check '
        'metainfo.classes against the file\'s categories)')
    if train and dropped == counts['total']:
        raise ValueError(f'{message}. No box is left to train on.')
    print_log(message, logger='current', level=logging.WARNING)


def _label_maps(dirname: str, suffix: str) -> list[str]:
    found = []
    for root, _, files in os.walk(dirname, followlinks=True):
        found += [osp.join(root, f) for f in files if f.endswith(suffix)]
    return sorted(found)


def check_label_values(labels: np.ndarray, path: str, num_classes: int,
                       reduce_zero_label: bool,
                       ignore_index: int = IGNORE_INDEX) -> None:
    """Raise naming ``path`` unless ``labels`` (as read from the file) is
    single-channel with every value a class or the ignore index.

    With ``reduce_zero_label`` the file's 0 is ignored and ``c`` is class
    ``c - 1``, so its valid values are 0..num_classes; else
    0..num_classes - 1. Both also take ``ignore_index``.
    """
    if labels.ndim != 2:
        raise ValueError(
            f'label map {path} has shape {labels.shape}: labels must be '
            'single-channel class indices (a grayscale or palette PNG), '
            'not colours (RGB)')
    top = num_classes if reduce_zero_label else num_classes - 1
    values = np.unique(labels)
    bad = values[(values > top) & (values != ignore_index)]
    if bad.size:
        raise ValueError(
            f'label map {path} holds values {bad[:10].tolist()} outside '
            f'0..{top} (and {ignore_index}, ignored): {num_classes} classes'
            f'{", reduce_zero_label=True" if reduce_zero_label else ""}')


def _seg_settings(cfg: Config, dataset: dict) -> Optional[tuple[int, bool]]:
    """(num_classes, reduce_zero_label) of a segmentation dataset."""
    head = (cfg.get('model') or {}).get('decode_head') or {}
    num_classes = head.get('num_classes') if isinstance(head, dict) else None
    if num_classes is None:
        classes = _classes(cfg, dataset)
        num_classes = len(classes) if classes else None
    if num_classes is None:
        return None
    reduce = dataset.get('reduce_zero_label')
    if reduce is None:
        import inspect
        cls = _dataset_class(cfg, dataset)
        param = inspect.signature(cls).parameters.get(
            'reduce_zero_label') if cls else None
        reduce = bool(param.default) if param is not None else False
    return num_classes, bool(reduce)


def _join(root: str, path: str) -> str:
    return path if osp.isabs(path) or not root else osp.join(root, path)


def _check_seg_pairs(dataset: dict, where: str) -> None:
    """Every image of a segmentation dataset has its label map, as mmseg
    1.x's ``BaseSegDataset.load_data_list`` pairs them (the image's path
    relative to ``img_path`` with ``img_suffix`` swapped for
    ``seg_map_suffix``, under ``seg_map_path``)."""
    root = dataset.get('data_root') or ''
    prefix = dataset.get('data_prefix') or {}
    img_dir = _join(root, prefix.get('img_path') or '')
    seg_dir = _join(root, prefix.get('seg_map_path') or '')
    img_suffix = dataset.get('img_suffix', '.jpg')
    seg_suffix = dataset.get('seg_map_suffix', '.png')
    ann_file = _join(root, dataset.get('ann_file') or '')
    listed = bool(dataset.get('ann_file')) and osp.isfile(ann_file)
    if listed:  # a text file of names without suffixes
        with open(ann_file, encoding='utf-8') as f:
            names = [line.strip() for line in f if line.strip()]
        listed_by = f"'{ann_file}'"
    else:
        names = [osp.relpath(path, img_dir)[:-len(img_suffix)]
                 for path in _label_maps(img_dir, img_suffix)]
        listed_by = f"the images under '{img_dir}'"
    if listed:
        check_listed_files([osp.join(img_dir, name + img_suffix)
                            for name in names], f'{where}.data_prefix.'
                           'img_path', listed_by)
    check_listed_files([osp.join(seg_dir, name + seg_suffix)
                        for name in names],
                       f'{where}.data_prefix.seg_map_path', listed_by)


def check_annotations(cfg: Config, splits: Sequence[str] = ('train', 'val'),
                      max_label_maps: int = 100) -> None:
    """Read what the run's datasets hold, before anything is built.

    Args:
        cfg: The config, after ``--cfg-options``.
        splits: The splits the run builds. Defaults to ('train', 'val').
        max_label_maps: Label maps read per dataset; a larger set is
            sampled evenly. Defaults to 100.

    Raises:
        ValueError: Naming the config key and the file: an annotation file
            that is not JSON, a training set whose boxes mmdet would all
            drop, a label map that is not single-channel or holds values
            beyond the classes.
    """
    from PIL import Image
    parsed = set()
    for split in splits:
        loader = cfg.get(f'{split}_dataloader') or {}
        if not loader.get('dataset'):
            continue
        for where, dataset in dataset_cfgs(loader['dataset'],
                                           f'{split}_dataloader.dataset'):
            root = dataset.get('data_root') or ''
            ann_file = dataset.get('ann_file') or ''
            path = ann_file if osp.isabs(ann_file) or not root else \
                osp.join(root, ann_file)
            if path.endswith('.json') and osp.isfile(path):
                coco = _read_json(path, f'{where}.ann_file')
                parsed.add(osp.realpath(path))
                if isinstance(coco, dict) and 'annotations' in coco:
                    _check_coco(coco, path, f'{where}.ann_file',
                                _classes(cfg, dataset), split == 'train')
                if isinstance(coco, dict) and 'images' in coco:
                    # mmdet 3.x CocoDataset: data_prefix.img + file_name
                    img_dir = _join(root, (dataset.get('data_prefix')
                                           or {}).get('img') or '')
                    check_listed_files(
                        [osp.join(img_dir, img['file_name'])
                         for img in coco['images']],
                        f'{where}.data_prefix.img', f"'{path}'")
            seg_dir = (dataset.get('data_prefix') or {}).get('seg_map_path')
            if seg_dir and cfg.get('default_scope') == 'mmseg':
                _check_seg_pairs(dataset, where)
            settings = _seg_settings(cfg, dataset) if seg_dir else None
            if settings is None:
                continue
            seg_dir = osp.join(root, seg_dir) if root else seg_dir
            files = _label_maps(seg_dir, dataset.get('seg_map_suffix',
                                                     '.png'))
            if len(files) > max_label_maps:
                picks = np.linspace(0, len(files) - 1, max_label_maps)
                files = [files[int(round(i))] for i in picks]
            for file in files:
                with Image.open(file) as image:
                    check_label_values(np.asarray(image), file, *settings)
        evaluator = cfg.get(f'{split}_evaluator')
        for metric in (evaluator if isinstance(evaluator, (list, tuple))
                       else [evaluator]):
            path = (metric or {}).get('ann_file')
            if (isinstance(path, str) and path.endswith('.json')
                    and osp.isfile(path)
                    and osp.realpath(path) not in parsed):
                _read_json(path, f'{split}_evaluator.ann_file')
                parsed.add(osp.realpath(path))


@TRANSFORMS.register_module()
class CheckSegLabels(BaseTransform):
    """Fails naming the label map when a loaded one is not single-channel
    or holds values beyond the classes (mmseg would fail later, in a
    transform or the loss, without the file's name). Put after
    ``LoadAnnotations``; the values it sees are after ``reduce_zero_label``.

    Args:
        num_classes (int): Number of classes.
        ignore_index (int): The ignored label. Defaults to 255.
    """

    def __init__(self, num_classes: int,
                 ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> dict:
        check_label_values(results['gt_seg_map'],
                           results.get('seg_map_path', '?'),
                           self.num_classes, False, self.ignore_index)
        return results


def add_label_checks(cfg: Config) -> None:
    """Insert :class:`CheckSegLabels` after each ``LoadAnnotations`` of the
    segmentation training pipelines (mmseg configs only)."""
    if cfg.get('default_scope') != 'mmseg':
        return
    head = (cfg.get('model') or {}).get('decode_head') or {}
    num_classes = head.get('num_classes') if isinstance(head, dict) else None
    if not num_classes:
        return
    check = dict(type='convnext_dense.CheckSegLabels',
                 num_classes=num_classes,
                 ignore_index=head.get('ignore_index', IGNORE_INDEX))
    loader = cfg.get('train_dataloader') or {}
    for _, dataset in dataset_cfgs(loader.get('dataset') or {}, 'train'):
        pipeline = dataset.get('pipeline') or []
        for i in reversed(range(len(pipeline))):
            if str(pipeline[i].get('type')).endswith('LoadAnnotations'):
                pipeline.insert(i + 1, dict(check))
