"""Helpers shared by tools/train.py, tools/test.py and the demo.

They work for detection and segmentation configs alike: the config's
``default_scope`` (set by its ``mmdet::`` or ``mmseg::`` bases) tells the
Runner which registries to use, and the few places where mmdet and mmseg
differ (where painted test images go, how predictions are dumped) branch on
:func:`~convnext_dense.tasks.detect_task`, here, once.
"""
from __future__ import annotations

import os.path as osp
import re

from mmengine.config import Config, ConfigDict
from mmengine.runner import Runner

from ..tasks import detect_task
from .config_args import check_cfg_options, find_config


def load_config(path: str,
                cfg_options: dict | None = None,
                launcher: str = 'none',
                work_dir: str | None = None,
                data_root: str | None = None,
                allow_new_keys: bool = False) -> Config:
    """Load a config, merge command-line overrides, and set the work dir
    and the distributed timeout (:func:`~convnext_dense.engine.distributed.
    set_dist_timeout`).

    Args:
        path: Config file, or a Runner work dir holding one
            (:func:`~.config_args.find_config`: a typo is named with the
            nearest existing config).
        cfg_options: ``key=value`` overrides (``DictAction`` output); a key
            the config does not have is refused, naming the nearest one
            (:func:`~.config_args.check_cfg_options`). Defaults to None.
        launcher: 'none', 'pytorch', 'slurm' or 'mpi'. Defaults to 'none'.
        work_dir: Work directory; None keeps the config's ``work_dir`` or
            falls back to ``work_dirs/<config name>``. Defaults to None.
        data_root: ``--data-root``: see :func:`set_data_root`. Defaults to
            None (the config's).
        allow_new_keys: Let ``cfg_options`` add keys (``--cfg-new-keys``).
            Defaults to False.
    """
    from convnext_dense.engine.distributed import set_dist_timeout
    path = find_config(path)
    cfg = Config.fromfile(path)
    cfg.launcher = launcher
    # the default first, so that --cfg-options may set the key it adds
    set_dist_timeout(cfg)
    if cfg_options:
        check_cfg_options(cfg, cfg_options, allow_new_keys)
        cfg.merge_from_dict(cfg_options)
    if data_root is not None:
        set_data_root(cfg, data_root)
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs',
                                osp.splitext(osp.basename(path))[0])
    return cfg


def set_data_root(cfg: Config, data_root: str) -> None:
    """Point every dataset of the config at ``data_root`` (``--data-root``).

    Sets ``data_root`` of each dataset under ``{train,val,test}_dataloader``
    (through Repeat/Concat wrappers) and moves each evaluator's ``ann_file``
    that lay under an old data root to the same place under the new one.
    Unlike ``--cfg-options KEY=PATH``, whose values mmengine strips of
    every blank, the path is taken as given.
    """
    from convnext_dense.engine.data_checks import dataset_cfgs
    old_roots = set()
    for split in ('train', 'val', 'test'):
        loader = cfg.get(f'{split}_dataloader')
        if loader and loader.get('dataset'):
            for _, dataset in dataset_cfgs(loader['dataset'], split):
                if dataset.get('data_root'):
                    old_roots.add(dataset['data_root'])
                dataset['data_root'] = data_root
    for split in ('val', 'test'):
        evaluator = cfg.get(f'{split}_evaluator')
        for metric in (evaluator if isinstance(evaluator, (list, tuple))
                       else [evaluator]):
            ann_file = (metric or {}).get('ann_file')
            old = next((root for root in sorted(old_roots, key=len,
                                                reverse=True)
                        if isinstance(ann_file, str)
                        and ann_file.startswith(root)), None)
            if old is not None:
                metric['ann_file'] = osp.join(
                    data_root, ann_file[len(old):].lstrip('/'))


def build_runner(cfg: Config, training: bool = True,
                 verbose: bool = False) -> Runner:
    """The config's ``runner_type`` if it names one, else mmengine's Runner
    (unless ``verbose``, :class:`~convnext_dense.engine.quiet.QuietRunner`,
    which keeps the config, environment and hook dumps in the work dir's log
    file only), dumping its config safely (:func:`~convnext_dense.engine.
    runner.runner_class`); ``training=False`` (``tools/test.py``) dumps it
    into the run's log dir, leaving a training's dumped config in the work
    dir alone."""
    from convnext_dense.engine.runner import runner_class
    if 'runner_type' in cfg:
        from mmengine.registry import RUNNERS
        with RUNNERS.switch_scope_and_registry(
                cfg.get('default_scope')) as registry:
            base = registry.get(cfg.runner_type)
        if base is None:
            raise KeyError(f'runner_type {cfg.runner_type!r} is not a '
                           'registered Runner')
    elif verbose:
        base = Runner
    else:
        from convnext_dense.engine.quiet import QuietRunner
        base = QuietRunner
    return runner_class(base, training).from_cfg(cfg)


def train(cfg: Config, verbose: bool = False):
    """Check the config, then train it with mmengine's Runner.

    Before anything is built or written to the work dir: a work dir that is
    or lies inside an input is refused (:func:`check_run_outputs`), decay
    settings that
    the optimizer constructor would ignore are refused
    (:func:`check_layer_decay_config`), every data path is checked and a
    missing one named with its config key (:func:`check_dataset_paths`),
    annotation files are parsed and label maps read (:func:`check_annotations`:
    the bad file is named; boxes mmdet would drop are counted in a warning,
    and a training set left with none refused; a label map met later is
    checked by the ``CheckSegLabels`` that :func:`add_label_checks` adds),
    and a ``--launcher pytorch`` run on a machine without CUDA is set up on
    gloo (:func:`setup_cpu_distributed`); a distributed run with
    ``ChannelsLastHook`` wraps its model channels-last
    (:func:`channels_last_ddp`). ``--resume`` without a file continues
    from the checkpoint ``last_checkpoint`` names, taken from the work dir
    itself when the pointer leads elsewhere (:func:`prepare_resume`: a
    copied or moved work dir). The work dir is locked for the
    training (:func:`work_dir_lock`: a second training in it is refused,
    naming the first). An empty dataset is explained rather than reported
    as a failed concatenation. Unless ``verbose``, the config, environment
    and hook dumps go to the log file only (:func:`build_runner`).

    Returns:
        The trained model (``Runner.train``'s return value).
    """
    from convnext_dense.engine import (add_label_checks, channels_last_ddp,
                                       check_annotations,
                                       check_dataset_paths,
                                       check_layer_decay_config,
                                       explain_dataset_errors,
                                       setup_cpu_distributed, work_dir_lock)
    from convnext_dense.engine.distributed import close_distributed
    from convnext_dense.engine.resume import prepare_resume

    from .outputs import check_run_outputs
    splits = ('train', 'val') if cfg.get('val_dataloader') else ('train', )
    check_run_outputs(cfg, splits, [])
    check_layer_decay_config(cfg)
    check_dataset_paths(cfg, splits)
    check_annotations(cfg, splits)
    add_label_checks(cfg)
    setup_cpu_distributed(cfg)
    channels_last_ddp(cfg)
    prepare_resume(cfg)
    finished = False
    try:
        with work_dir_lock(cfg.work_dir), explain_dataset_errors():
            model = build_runner(cfg, verbose=verbose).train()
        finished = True
    finally:
        # after an error the other ranks may never reach a barrier
        close_distributed(wait=finished)
    return model


def require_matching_checkpoint(cfg: Config,
                                allow_partial: bool = False) -> None:
    """Make loading ``cfg.load_from`` refuse a checkpoint of another model
    (:class:`~convnext_dense.engine.StrictLoadHook`), or with
    ``allow_partial`` only warn, naming what differs either way."""
    hooks = cfg.get('custom_hooks') or []
    hooks.append(dict(type='convnext_dense.StrictLoadHook',
                      allow_partial=allow_partial))
    cfg.custom_hooks = hooks


def enable_visualization(cfg: Config,
                         show_dir: str | None = None,
                         show: bool = False,
                         wait_time: float = 2.) -> None:
    """Make the test loop paint its predictions.

    mmdet's ``DetVisualizationHook`` writes painted images to its
    ``test_out_dir``; mmseg's ``SegVisualizationHook`` has no such option,
    so there the visualizer's ``save_dir`` moves instead (the images land in
    its ``vis_data/vis_image``). Either way a relative ``show_dir`` is taken
    relative to the current directory (mmdet's own tool would put it under
    ``work_dir/<timestamp>``).

    Args:
        cfg: Config to edit in place.
        show_dir: Directory for the painted images. Defaults to None.
        show: Also open a window per image. Defaults to False.
        wait_time: Seconds each window stays open. Defaults to 2.
    """
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise ValueError(
            'the config has no default_hooks.visualization to paint '
            'predictions with; mmdet and mmseg default_runtime bases add one')
    hook['draw'] = True
    if show:
        hook['show'] = True
        hook['wait_time'] = wait_time
    if show_dir:
        show_dir = osp.abspath(show_dir)
        if detect_task(cfg) == 'det':
            hook['test_out_dir'] = show_dir
        else:
            cfg.visualizer['save_dir'] = show_dir


def flatten_seg_pictures(show_dir: str) -> list[str]:
    """Move mmseg's painted test images to ``show_dir/<image name>.png``.

    mmseg's visualizer writes ``show_dir/vis_data/vis_image/<file>_<step>
    .png`` (e.g. ``ADE_val_1.jpg_800.png``); detection pictures land flat in
    ``show_dir`` already. Returns the files, sorted.
    """
    import glob
    import re

    from convnext_dense.fileio import move_file
    nested = osp.join(show_dir, 'vis_data', 'vis_image')
    moved = []
    for path in sorted(glob.glob(osp.join(nested, '*.png'))):
        # <name>[.<ext>]_<step>.png -> <name>.png
        name = re.sub(r'(\.[A-Za-z]+)?_\d+\.png$', '.png',
                      osp.basename(path))
        move_file(path, osp.join(show_dir, name))
        moved.append(osp.join(show_dir, name))
    return moved


def select_device(device: str | None) -> None:
    """Make the Runner use ``device`` ('cpu', 'cuda' or 'cuda:N'; None:
    cuda if available): mmengine places the model on the first visible
    GPU, so this sets ``CUDA_VISIBLE_DEVICES`` (before CUDA starts)."""
    import os
    if device is None or device == 'cuda':
        return
    if device == 'cpu':
        os.environ['CUDA_VISIBLE_DEVICES'] = ''
    elif re.fullmatch(r'cuda:\d+', device):
        os.environ['CUDA_VISIBLE_DEVICES'] = device.split(':')[1]
    else:
        raise ValueError(f"--device must be 'cpu', 'cuda' or 'cuda:N', got "
                         f'{device!r}')


def enable_tta(cfg: Config) -> None:
    """Wrap the model in the config's ``tta_model`` and test with its
    ``tta_pipeline`` (as mmdet's and mmseg's test tools do).

    Raises:
        ValueError: if the config defines either of them not.
    """
    missing = [key for key in ('tta_model', 'tta_pipeline') if key not in cfg]
    if missing:
        raise ValueError(
            f'--tta needs {" and ".join(missing)} in the config. mmseg '
            'bases define both; the detection configs define none, as '
            "mmdet 3.3's DetTTAModel cannot merge masks")
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    dataset = cfg.test_dataloader.dataset
    while 'dataset' in dataset:  # wrapped datasets (RepeatDataset, ...)
        dataset = dataset['dataset']
    dataset.pipeline = cfg.tta_pipeline


def dump_predictions(runner: Runner, out: str) -> None:
    """Also pickle every test prediction to ``out`` (a .pkl file).

    Detection results go through mmdet's ``DumpDetResults`` (masks as RLE,
    the format mmdet's offline analysis tools read); anything else through
    mmengine's ``DumpResults``.
    """
    if not out.endswith(('.pkl', '.pickle')):
        raise ValueError(f'--out must name a .pkl file: {out}')
    if detect_task(runner.cfg) == 'det':
        from mmdet.evaluation import DumpDetResults as Dump
    else:
        from mmengine.evaluator import DumpResults as Dump
    runner.test_evaluator.metrics.append(Dump(out_file_path=out))
