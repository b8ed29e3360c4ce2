"""The CPU demos behind ``python tools/demo.py {det,dino,seg}``.

Each demo writes a small synthetic data set if it is not there yet, trains
a small ConvNeXt model on it from scratch with the task's demo config,
evaluates it on the val split (COCO box/mask AP for detection, mIoU for
segmentation) and paints its predictions into ``<work_dir>/vis``. Training
logs every few iterations through mmengine.

Everything task-specific sits in :data:`TASKS`; the flow is shared.
"""
from __future__ import annotations

import importlib
import os
import os.path as osp
import time
from dataclasses import dataclass, field

import torch
from mmengine.logging import print_log

from convnext_dense.engine.precision import apply_training_precision
from convnext_dense.paths import REPO_ROOT


@dataclass(frozen=True)
class DemoTask:
    """What one demo needs.

    Args:
        config: Demo config, relative to the repository root.
        data_root: Where the generator writes the data set (relative to the
            working directory); the config must read it from there.
        work_dir: Logs, checkpoint and painted predictions.
        generator: ``module:function`` that writes the data set, called as
            ``function(data_root, **generator_kwargs)``.
        generator_kwargs: Extra generator arguments. Defaults to none.
        ready_file: A file under data_root whose presence means the data
            set is complete, so it is not written again.
    """
    config: str
    data_root: str
    work_dir: str
    generator: str
    ready_file: str
    generator_kwargs: dict = field(default_factory=dict)


# the two toy data sets, each shared by the demos that train on it (one
# folder, written once: the first demo to run writes it)
_TOY_COCO = dict(
    data_root='data/toy_coco',
    generator='convnext_dense.toy_data.toy_coco:generate_toy_coco',
    # sizes the det demo config was tuned for (it resizes to 128 anyway)
    generator_kwargs=dict(num_train=300, num_val=60, image_size=128),
    ready_file='annotations/instances_val2017.json')
_TOY_ADE = dict(
    data_root='data/toy_ade',
    generator='convnext_dense.toy_data.toy_ade:generate_toy_ade',
    # sizes the seg demo config was tuned for (128 px, as its crop)
    generator_kwargs=dict(num_train=240, num_val=40, image_size=128),
    ready_file='toy_ade.json')  # written last

TASKS: dict[str, DemoTask] = {
    'det': DemoTask(config='configs/demo/cascade_convnext_demo.py',
                    work_dir='work_dirs/demo_det', **_TOY_COCO),
    'dino': DemoTask(config='configs/demo/dino_convnext_demo.py',
                     work_dir='work_dirs/demo_dino', **_TOY_COCO),
    'seg': DemoTask(config='configs/demo/upernet_convnext_demo.py',
                    work_dir='work_dirs/demo_seg', **_TOY_ADE),
    'seg-m2f': DemoTask(config='configs/demo/mask2former_convnext_demo.py',
                        work_dir='work_dirs/demo_seg_m2f', **_TOY_ADE),
}


def prepare_data(task: DemoTask, data_root: str | None = None) -> str:
    """Write the task's data set unless it is there already.

    Returns:
        The data root used.
    """
    data_root = data_root or task.data_root
    if osp.isfile(osp.join(data_root, task.ready_file)):
        print_log(f'demo data: using {data_root}', logger='current')
        return data_root
    module, function = task.generator.split(':')
    generate = getattr(importlib.import_module(module), function)
    start = time.perf_counter()
    generate(data_root, **task.generator_kwargs)
    print_log(f'demo data: wrote {data_root} in '
              f'{time.perf_counter() - start:.1f} s', logger='current')
    return data_root


def run_demo(name: str,
             work_dir: str | None = None,
             cfg_options: dict | None = None,
             allow_new_keys: bool = False,
             verbose: bool = False,
             precision: str = 'auto') -> dict:
    """Run one demo end to end: data, training, evaluation, painting.

    Args:
        name: A key of :data:`TASKS` ('det', 'dino' or 'seg').
        work_dir: Overrides the task's work dir. Defaults to None.
        cfg_options: Config overrides (as ``--cfg-options`` gives them),
            e.g. a shorter schedule; keys the config does not have are
            refused. Defaults to None.
        allow_new_keys: Accept new keys in ``cfg_options``. Defaults to
            False.
        verbose: Also print the config, environment and hook dumps (they
            are in the work dir's log file either way). Defaults to False.
        precision: Training and testing precision, 'auto', 'fp32', 'bf16'
            or 'fp16' (:func:`~convnext_dense.engine.
            apply_training_precision`). Defaults to 'auto'.

    Returns:
        The test metrics, e.g. ``{'coco/bbox_mAP': ..., 'coco/segm_mAP':
        ...}`` for 'det'.

    Raises:
        OutputOverwritesInputError: Before anything is written, if the work
            dir is or lies inside an input (the data's image folders).
    """
    if name not in TASKS:
        raise ValueError(f'unknown demo {name!r}; choose one of '
                         f'{sorted(TASKS)}')
    task = TASKS[name]
    # imported here: the helpers pull in mmengine's Runner
    from convnext_dense.apis.cli import (build_runner, enable_visualization,
                                       flatten_seg_pictures, load_config)
    from convnext_dense.tasks import detect_task

    if 'OMP_NUM_THREADS' not in os.environ:
        # these small models run best on one intra-op thread where other
        # processes share the cores: measured on 2 busy cores, a training
        # iteration of an early det demo took 1.2 s on one thread, 11.9 s
        # on two
        torch.set_num_threads(1)
    from .outputs import check_run_outputs
    work_dir = work_dir or task.work_dir
    cfg = load_config(osp.join(REPO_ROOT, task.config), cfg_options,
                      work_dir=work_dir, allow_new_keys=allow_new_keys)
    vis_dir = osp.abspath(osp.join(work_dir, 'vis'))
    check_run_outputs(cfg, ('train', 'test'), [('the pictures folder',
                                                 vis_dir)])
    prepare_data(task)
    # no validation during training: the test loop evaluates once, at the
    # end, and paints the predictions at the same time
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    apply_training_precision(cfg, precision)
    enable_visualization(cfg, show_dir=vis_dir)
    runner = build_runner(cfg, verbose=verbose)
    start = time.perf_counter()
    runner.train()
    trained = time.perf_counter()
    metrics = runner.test()
    if detect_task(cfg) == 'seg':  # as detection: vis/<image name>.png
        flatten_seg_pictures(osp.join(work_dir, 'vis'))
    print_log(
        f'demo {name}: trained in {trained - start:.0f} s, evaluated in '
        f'{time.perf_counter() - trained:.0f} s; painted predictions in '
        f"{osp.join(work_dir, 'vis')}", logger='current')
    return metrics
