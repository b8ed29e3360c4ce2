"""End-to-end segmentation runs through the command-line tools.

tools/train.py and tools/test.py run as subprocesses, as a user runs them,
on a toy ADE20K set (convnext_dense.toy_data.toy_ade) written into a
temporary working directory, with the CPU demo config: a short training
run validated with mIoU, then single-scale and multi-scale + flip (--tta)
tests whose mIoU is recomputed here from the dumped predictions, and the
painted overlays. The full demo (learning to mIoU >= 50) and the same
demo with a V2 backbone on half its schedule (>= 50) are marked slow.
"""
from __future__ import annotations

import os
import os.path as osp
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip('mmseg')

from convnext_dense.toy_data.toy_ade import CLASSES, generate_toy_ade  # noqa
from helpers.tool_runs import (REPO, metric,  # noqa: E402
                                metrics_by_precision, run_tool)

# long end-to-end runs: deselect with -m 'not slow'
pytestmark = pytest.mark.slow

DEMO_CONFIG = osp.join(REPO, 'configs', 'demo', 'upernet_convnext_demo.py')
NUM_TRAIN, NUM_VAL = 32, 4
ITERS = 150
# short schedule; no worker processes (each would cost a core here)
OVERRIDES = [
    f'train_cfg.max_iters={ITERS}', f'train_cfg.val_interval={ITERS}',
    'param_scheduler.0.end=10', 'param_scheduler.1.begin=10',
    f'param_scheduler.1.end={ITERS}',
    f'default_hooks.checkpoint.interval={ITERS}',
    'default_hooks.logger.interval=10', 'train_dataloader.batch_size=8',
] + [f'{loader}.{key}' for loader in (
    'train_dataloader', 'val_dataloader', 'test_dataloader')
     for key in ('num_workers=0', 'persistent_workers=False')]


def miou_from_dump(path: str) -> tuple[float, list[dict]]:
    """mIoU (in %) recomputed from a tools/test.py --out dump, the way
    ADE20K defines it: a confusion matrix over the pixels whose label is
    not 255, per-class IoU = TP / (TP + FP + FN), the mean over classes
    that occur in the labels or the predictions."""
    with open(path, 'rb') as f:
        samples = pickle.load(f)
    k = len(CLASSES)
    confusion = np.zeros((k, k), np.int64)
    for sample in samples:
        gt = np.asarray(sample['gt_sem_seg']['data']).ravel()
        pred = np.asarray(sample['pred_sem_seg']['data']).ravel()
        valid = gt != 255
        confusion += np.bincount(gt[valid] * k + pred[valid],
                                 minlength=k * k).reshape(k, k)
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    return float(np.mean(tp[union > 0] / union[union > 0]) * 100), samples


@pytest.fixture(scope='module')
def trained(tmp_path_factory) -> dict:
    """Train the demo config for 150 iterations in a scratch directory."""
    cwd = str(tmp_path_factory.mktemp('seg_e2e'))
    # the demo config reads data/toy_ade relative to the working directory
    generate_toy_ade(osp.join(cwd, 'data', 'toy_ade'), num_train=NUM_TRAIN,
                     num_val=NUM_VAL)
    work_dir = osp.join(cwd, 'work')
    result = run_tool([
        osp.join(REPO, 'tools', 'train.py'), DEMO_CONFIG, '--work-dir',
        work_dir, '--cfg-options', *OVERRIDES], cwd)
    assert result.returncode == 0, result.stderr[-5000:]
    return dict(cwd=cwd, work_dir=work_dir,
                checkpoint=osp.join(work_dir, f'iter_{ITERS}.pth'),
                log=result.stdout + result.stderr)


def test_train_learns_and_validates_miou(trained):
    log = trained['log']
    assert re.search(rf'Iter\(train\) \[{ITERS}/{ITERS}\]', log), log[-3000:]
    # logged every 10 iterations (and at each pass over the 32 images)
    losses = {int(i): float(v) for i, v in re.findall(
        r'Iter\(train\) \[\s*(\d+)/\d+\].*?\bloss: ([\d.]+)', log)}
    assert set(range(10, ITERS + 1, 10)) <= set(losses)
    # from scratch, the loss falls well below its start
    assert losses[ITERS] < 0.7 * losses[10], losses
    # the validation at the last iteration reports every class and mIoU
    for name in CLASSES:
        assert re.search(rf'\|\s*{name}\s*\|', log), name
    # "ground" is ~3/4 of the labelled pixels: predicting only ground gives
    # mIoU ~15 (at most 100 / 5); measured after these 150 iterations: 49
    assert 30 < metric(log, 'mIoU') <= 100
    assert osp.isfile(trained['checkpoint'])


def test_test_tool_miou_matches_recomputed(trained):
    out = osp.join(trained['cwd'], 'single.pkl')
    vis = osp.join(trained['cwd'], 'vis')
    result = run_tool([
        osp.join(REPO, 'tools', 'test.py'), DEMO_CONFIG,
        trained['checkpoint'], '--work-dir',
        osp.join(trained['cwd'], 'test'), '--out', out, '--show-dir', vis,
        '--cfg-options', *OVERRIDES], trained['cwd'])
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    recomputed, samples = miou_from_dump(out)
    assert len(samples) == NUM_VAL
    assert metric(log, 'mIoU') == pytest.approx(recomputed, abs=0.01)
    # the same model validated at the end of training
    assert metric(log, 'mIoU') == metric(trained['log'], 'mIoU')
    # mmseg's SegLocalVisualizer: one overlay per val image
    painted = [f for _, _, files in os.walk(vis) for f in files
               if f.endswith('.png')]
    assert len(painted) == NUM_VAL


def test_bf16_evaluation_within_half_a_point_of_fp32(trained):
    found = metrics_by_precision(
        DEMO_CONFIG, trained['checkpoint'], trained['cwd'], ['mIoU'],
        extra=('--cfg-options', *OVERRIDES))
    assert found['fp32']['mIoU'] == metric(trained['log'], 'mIoU')
    assert abs(found['bf16']['mIoU'] - found['fp32']['mIoU']) <= 0.5, found


def test_tta_runs_every_scale_and_flip(trained):
    """tools/test.py --tta: SegTTAModel over 6 scales x 2 flips."""
    out = osp.join(trained['cwd'], 'tta.pkl')
    result = run_tool([
        osp.join(REPO, 'tools', 'test.py'), DEMO_CONFIG,
        trained['checkpoint'], '--tta', '--work-dir',
        osp.join(trained['cwd'], 'tta'), '--out', out,
        '--cfg-options', *OVERRIDES], trained['cwd'])
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    recomputed, samples = miou_from_dump(out)
    assert len(samples) == NUM_VAL
    assert metric(log, 'mIoU') == pytest.approx(recomputed, abs=0.01)
    for sample in samples:
        # SegTTAModel keeps the meta of the last view: the largest scale
        # (1.75 x 128 = 224, several sliding windows), flipped
        assert sample['img_shape'] == (224, 224)
        assert sample['flip'] is True
        # predictions come back at the original size
        assert np.asarray(sample['pred_sem_seg']['data']).shape == (
            1, 128, 128)


def test_tta_pipeline_yields_twelve_views(trained):
    """The views tools/test.py --tta feeds the model, per image."""
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    from convnext_dense.apis.cli import enable_tta, load_config

    cfg = load_config(DEMO_CONFIG)
    enable_tta(cfg)
    assert cfg.model.type == 'SegTTAModel'
    assert cfg.model.module.backbone.arch == 'test'
    dataset_cfg = cfg.test_dataloader.dataset
    dataset_cfg.data_root = osp.join(trained['cwd'], 'data', 'toy_ade')
    init_default_scope('mmseg')
    views = DATASETS.build(dataset_cfg)[0]
    shapes = [tuple(img.shape[1:]) for img in views['inputs']]
    flips = [s.flip for s in views['data_samples']]
    sides = [int(128 * r) for r in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)]
    assert shapes == [(s, s) for s in sides for _ in range(2)]
    assert flips == [False, True] * 6


@pytest.mark.slow
@pytest.mark.demo('seg')
def test_demo_learns(demo_run):
    """The full CPU demo (`tools/demo.py seg`, run once per session in the
    background: tests/helpers/demos.py): trains from scratch to mIoU >= 50
    on toy val."""
    log = demo_run.log
    assert demo_run.returncode == 0, log[-5000:]
    tmp_path = Path(demo_run.cwd)
    assert metric(log, 'mIoU') >= 50
    vis = tmp_path / 'work_dirs' / 'demo_seg' / 'vis'
    painted = [f for _, _, files in os.walk(vis) for f in files
               if f.endswith('.png')]
    num_val = len(os.listdir(tmp_path / 'data' / 'toy_ade' / 'images' /
                             'validation'))
    assert len(painted) == num_val


# measured 2026-12 on the 2-core development CPU: mIoU 61.7 on the 40 toy val
# images after the 400 iterations of the suite's run (1 min 19 s alone; the
# full 800: 67.6); the V1 demo's floor of 50, 11.7 points below
V2_FLOOR = 50.


@pytest.mark.slow
@pytest.mark.demo('seg-v2')
def test_demo_learns_with_a_v2_backbone(demo_run):
    """The same demo with a ConvNeXt-V2 backbone of the demo's size
    ('v2-test': depths 1, dims 16..128, GRN in every block, no layer
    scale), from scratch, on half the demo's schedule (400 iterations),
    everything else the demo's: mIoU >= 50 (measured 61.7). Run once per
    session in the background (tests/helpers/demos.py).
    """
    log = demo_run.log
    assert demo_run.returncode == 0, log[-5000:]
    tmp_path = Path(demo_run.cwd)
    work_dir = tmp_path / 'work_dirs' / 'demo_seg'
    last = (work_dir / 'last_checkpoint').read_text().strip()
    state = torch.load(tmp_path / last, map_location='cpu',
                       weights_only=False)['state_dict']
    assert 'backbone.stages.0.0.grn.gamma' in state
    assert not any(key.endswith('.gamma') and '.grn.' not in key
                   for key in state)  # no layer scale
    assert metric(log, 'mIoU') >= V2_FLOOR
