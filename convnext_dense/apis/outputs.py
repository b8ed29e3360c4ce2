"""The inputs of a config's run, and the guard that keeps a tool's outputs
off them (:func:`convnext_dense.fileio.check_outputs`).

``tools/test.py --show-dir`` pointed at the validation image folder painted
its predictions over the images (mmdet's visualization hook names each
picture after its image); ``--out`` or ``--work-dir`` could as well replace
an annotation file or land in an image folder. Every tool that runs a
config calls :func:`check_run_outputs` before anything is built.
"""
from __future__ import annotations

import os.path as osp
from typing import Iterable, Sequence

from mmengine.config import Config

from convnext_dense.fileio import Named, check_outputs
from convnext_dense.fileio import OutputOverwritesInputError  # noqa: F401


def _local(path) -> bool:
    return isinstance(path, str) and bool(path) and '://' not in path


def config_inputs(cfg: Config,
                  splits: Sequence[str] = ('train', 'val', 'test')
                  ) -> list[Named]:
    """Every local file and folder a run of ``cfg`` reads, named.

    The config file itself, ``load_from`` (the checkpoint), and for each
    split's datasets (through Repeat/Concat wrappers) every ``data_prefix``
    folder and ``ann_file`` joined with ``data_root`` as mmengine joins
    them, and each evaluator's ``ann_file``.
    """
    from convnext_dense.engine.data_checks import dataset_cfgs
    inputs: list[Named] = []
    if cfg.filename:
        inputs.append(('the config', cfg.filename))
    if _local(cfg.get('load_from')):
        inputs.append(('the checkpoint', cfg.load_from))
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if loader and loader.get('dataset'):
            for where, dataset in dataset_cfgs(
                    loader['dataset'], f'{split}_dataloader.dataset'):
                root = dataset.get('data_root') or ''

                def join(path: str) -> str:
                    return path if osp.isabs(path) or not root else \
                        osp.join(root, path)

                if _local(dataset.get('ann_file')):
                    inputs.append((f'the input file {where}.ann_file',
                                   join(dataset['ann_file'])))
                for key, prefix in (dataset.get('data_prefix') or {}).items():
                    if _local(prefix):
                        inputs.append((
                            f'the input folder {where}.data_prefix.{key}',
                            join(prefix)))
        evaluator = cfg.get(f'{split}_evaluator')
        for metric in (evaluator if isinstance(evaluator, (list, tuple))
                       else [evaluator]):
            ann_file = (metric or {}).get('ann_file')
            if _local(ann_file):
                inputs.append((f'the input file {split}_evaluator.ann_file',
                               ann_file))
    return inputs


def check_run_outputs(cfg: Config, splits: Sequence[str],
                      outputs: Iterable[Named]) -> None:
    """Refuse outputs (``(what, path)``; None paths skipped) that are, or
    lie inside, an input of ``cfg`` (:func:`config_inputs`). The work dir
    is always checked.

    Raises:
        OutputOverwritesInputError: Naming output, input and config key.
    """
    outputs = [*outputs, ('the work dir', cfg.get('work_dir'))]
    check_outputs(outputs, config_inputs(cfg, splits))
