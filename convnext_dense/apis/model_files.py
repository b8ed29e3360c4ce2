"""The files a trained model is made of, read for inference and export.

A config (or the copy a Runner dumped into its work dir), a checkpoint (or
the one a work dir's ``last_checkpoint`` names) loaded strictly, and the
class names and palette to paint with.
"""
from __future__ import annotations

import glob
import logging
import os.path as osp

import numpy as np
import torch.nn as nn
from mmengine.config import Config
from mmengine.logging import print_log

from convnext_dense.checkpoint.loaders import read_model_checkpoint
from convnext_dense.checkpoint.mismatch import (CheckpointMismatchError,
                                                check_checkpoint_fits,
                                                state_dict_of)

from .config_args import find_config

# ---------------------------------------------------------------------------
# config, checkpoint and input resolution
# ---------------------------------------------------------------------------

def resolve_config(path: str) -> str:
    """A config file, or the single config a Runner dumped into a work dir
    (:func:`~.config_args.find_config`).

    Raises:
        FileNotFoundError: If there is no such file (naming the nearest
            existing config), or the directory holds no ``*.py`` config or
            several.
    """
    return find_config(path)


def resolve_checkpoint(path: str) -> str:
    """A checkpoint file, or the latest checkpoint of a Runner work dir
    (the one its ``last_checkpoint`` file names).

    Raises:
        FileNotFoundError: If there is no such file or no checkpoint in the
            directory.
    """
    if osp.isfile(path):
        return path
    if not osp.isdir(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    from convnext_dense.engine.resume import last_checkpoint
    try:  # the pointer, read as --resume reads it
        named = last_checkpoint(path)
    except FileNotFoundError:
        named = None
    if named:
        return named
    found = sorted(glob.glob(osp.join(path, '*.pth')), key=osp.getmtime)
    if not found:
        raise FileNotFoundError(
            f'no checkpoint in {path}: no last_checkpoint file and no *.pth')
    return found[-1]


def load_checkpoint_strict(model: nn.Module, filename: str) -> dict:
    """Load a checkpoint into ``model``, refusing any mismatch.

    Reads the file (a path, URL or zoo name) through
    :func:`convnext_dense.checkpoint.loaders.read_model_checkpoint`: the
    package's one reader, with its allow-list, so mmengine checkpoints of
    training runs load and crafted pickles do not.

    Returns:
        The checkpoint's ``meta`` (empty if it has none).

    Raises:
        CheckpointMismatchError: If any tensor of the model is missing in
            the file, any tensor of the file has no place in the model, or
            any shape differs; the message counts each kind and names the
            first few (:func:`~convnext_dense.checkpoint.mismatch.
            describe_mismatch`, the report ``tools/test.py`` and
            ``--resume`` give too).
    """
    checkpoint = read_model_checkpoint(filename, map_location='cpu')
    if not isinstance(checkpoint, dict):
        raise CheckpointMismatchError(
            f'{filename} holds a {type(checkpoint).__name__}, not a '
            'state dict')
    check_checkpoint_fits(model, checkpoint, filename)
    model.load_state_dict(state_dict_of(checkpoint), strict=True)
    meta = checkpoint.get('meta')
    return meta if isinstance(meta, dict) else {}


# ---------------------------------------------------------------------------
# class names and palette
# ---------------------------------------------------------------------------

def _num_classes(model: nn.Module, task: str) -> int:
    if task == 'seg':
        return model.decode_head.num_classes
    head = model.roi_head.bbox_head if hasattr(model, 'roi_head') else \
        model.bbox_head
    if isinstance(head, nn.ModuleList):  # cascade: every stage alike
        head = head[-1]
    return head.num_classes


def _config_dataset_meta(cfg: Config, task: str) -> dict:
    """The metainfo (classes, palette) of the config's test dataset, built
    lazily (no annotation file is read); empty if it cannot be built."""
    if task == 'det':
        from mmdet.registry import DATASETS
    else:
        from mmseg.registry import DATASETS
    dataset_cfg = cfg.get('test_dataloader', {}).get('dataset')
    if dataset_cfg is None:
        return {}
    dataset_cfg = dataset_cfg.copy()
    dataset_cfg['lazy_init'] = True
    try:
        return dict(DATASETS.build(dataset_cfg).metainfo)
    except Exception as err:  # a dataset that needs its files to build
        print_log(f'class names: the test dataset of the config could not '
                  f'be built ({type(err).__name__}: {err})',
                  logger='current', level=logging.WARNING)
        return {}


def _palette(num_classes: int, seed: int = 0) -> list[tuple[int, int, int]]:
    """A fixed pseudo-random RGB colour per class."""
    rng = np.random.default_rng(seed)
    return [tuple(int(c) for c in rng.integers(0, 256, 3))
            for _ in range(num_classes)]


def dataset_meta_for(model: nn.Module, task: str, checkpoint_meta: dict,
                     cfg: Config) -> dict:
    """Class names and palette for painting.

    From the checkpoint (mmengine's Runner stores the dataset's metainfo
    there), else from the config's test dataset; generic names and a fixed
    palette if neither has as many classes as the model predicts.
    """
    num_classes = _num_classes(model, task)
    meta = {
        k.lower(): v
        for k, v in checkpoint_meta.get('dataset_meta', {}).items()
    }
    source = 'the checkpoint'
    if not meta.get('classes'):
        meta, source = _config_dataset_meta(cfg, task), 'the config'
    classes = list(meta.get('classes') or ())
    if len(classes) != num_classes:
        if classes:
            print_log(
                f'class names: {source} lists {len(classes)} classes, the '
                f'model predicts {num_classes}; painting generic names',
                logger='current', level=logging.WARNING)
        classes = [f'class {i}' for i in range(num_classes)]
        meta = {}
    palette = meta.get('palette')
    if not isinstance(palette, (list, tuple)) or len(palette) < num_classes:
        palette = _palette(num_classes)
    return dict(classes=tuple(classes),
                palette=[tuple(c) for c in palette[:num_classes]])
