"""End-to-end detection runs through the command-line tools.

tools/train.py and tools/test.py run as subprocesses, as a user runs them,
on a toy COCO set (convnext_dense.toy_data.toy_coco) written into a
temporary working directory, with the CPU demo config: a few training
iterations, COCO box and mask evaluation, painted predictions and a
prediction dump, whose box and mask AP are recomputed here with pycocotools
and must equal what the tool reported. The full demo (learning to a useful
AP) is marked slow.
"""
from __future__ import annotations

import os
import os.path as osp
import pickle
import re

import pytest

pytest.importorskip('mmdet')

from convnext_dense.toy_data.toy_coco import (CLASSES,  # noqa: E402
                                              generate_toy_coco)
from helpers.tool_runs import (REPO, metric,  # noqa: E402
                                metrics_by_precision, run_tool)

# long end-to-end runs: deselect with -m 'not slow'
pytestmark = pytest.mark.slow

DEMO_CONFIG = osp.join(REPO, 'configs', 'demo', 'cascade_convnext_demo.py')
# pycocotools' stats[0:6], under mmdet's metric names
AP_NAMES = ('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')


def coco_ap_from_dump(predictions: list[dict], ann_file: str) -> dict:
    """COCO box and mask AP of a tools/test.py --out dump, with pycocotools.

    Boxes go from (x1, y1, x2, y2) to COCO's (x, y, w, h), labels (indices
    into CLASSES) to the annotation file's category ids, and the masks (RLE
    in the dump) are scored without their boxes, so that small/medium/large
    are decided by mask area. pycocotools' default limit of 100 detections
    per image applies (the dump holds no more).

    Returns:
        ``{'bbox_mAP': ..., 'bbox_mAP_50': ..., 'segm_mAP': ...}``, unrounded.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    gt = COCO(ann_file)
    cat_ids = {cat['name']: cat['id'] for cat in gt.loadCats(gt.getCatIds())}
    cat_ids = [cat_ids[name] for name in CLASSES]
    boxes, masks = [], []
    for sample in predictions:
        pred = sample['pred_instances']
        assert len(pred['labels']) <= 100
        for i, (x1, y1, x2, y2) in enumerate(pred['bboxes'].tolist()):
            det = dict(image_id=sample['img_id'],
                       category_id=cat_ids[int(pred['labels'][i])],
                       score=float(pred['scores'][i]))
            boxes.append(dict(det, bbox=[x1, y1, x2 - x1, y2 - y1]))
            rle = dict(pred['masks'][i])
            if isinstance(rle['counts'], bytes):
                rle['counts'] = rle['counts'].decode()
            masks.append(dict(det, segmentation=rle))
    results = {}
    for iou_type, dets in (('bbox', boxes), ('segm', masks)):
        evaluator = COCOeval(gt, gt.loadRes(dets), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        for name, value in zip(AP_NAMES, evaluator.stats):
            results[f'{iou_type}_{name}'] = float(value)
    return results


@pytest.fixture(scope='module')
def trained(tmp_path_factory) -> dict:
    """Train the demo config for one short epoch in a scratch directory."""
    cwd = str(tmp_path_factory.mktemp('det_e2e'))
    # the demo config reads data/toy_coco relative to the working directory
    generate_toy_coco(osp.join(cwd, 'data', 'toy_coco'), num_train=8,
                      num_val=3, image_size=96)
    work_dir = osp.join(cwd, 'work')
    result = run_tool([
        osp.join(REPO, 'tools', 'train.py'), DEMO_CONFIG,
        '--work-dir', work_dir, '--cfg-options', 'train_cfg.max_epochs=1',
        'train_dataloader.batch_size=2', 'default_hooks.logger.interval=1'
    ], cwd)
    assert result.returncode == 0, result.stderr[-5000:]
    return dict(cwd=cwd, work_dir=work_dir,
                log=result.stdout + result.stderr)


def test_train_logs_losses_and_coco_ap(trained):
    log = trained['log']
    # 8 images at batch 2: four iterations, each logged
    assert re.search(r'Epoch\(train\) \[1\]\[4/4\]', log), log[-3000:]
    assert 's2.loss_bbox' in log and 's2.loss_mask' in log
    # the last epoch is validated with COCO AP (whose value
    # test_test_tool_evaluates_paints_and_dumps checks)
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        metric(log, key)
    assert osp.isfile(osp.join(trained['work_dir'], 'epoch_1.pth'))


def test_test_tool_evaluates_paints_and_dumps(trained):
    out = osp.join(trained['cwd'], 'predictions.pkl')
    vis = osp.join(trained['cwd'], 'vis')
    result = run_tool([
        osp.join(REPO, 'tools', 'test.py'), DEMO_CONFIG,
        osp.join(trained['work_dir'], 'epoch_1.pth'),
        '--work-dir', osp.join(trained['cwd'], 'test'),
        '--out', out, '--show-dir', vis
    ], trained['cwd'])
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    with open(out, 'rb') as f:
        predictions = pickle.load(f)
    assert len(predictions) == 3  # one per val image
    assert {'bboxes', 'scores', 'labels', 'masks'} <= set(
        predictions[0]['pred_instances'])
    # the AP the tool reported (rounded to 3 decimals) is the AP of the
    # predictions it dumped, against the annotations
    recomputed = coco_ap_from_dump(predictions, osp.join(
        trained['cwd'], 'data', 'toy_coco', 'annotations',
        'instances_val2017.json'))
    reported = {key: metric(log, f'coco/{key}') for key in recomputed}
    assert reported == pytest.approx(recomputed, abs=1e-3)
    # the validation at the end of training evaluated the same weights
    validated = {key: metric(trained['log'], f'coco/{key}')
                 for key in recomputed}
    assert validated == reported
    painted = sorted(os.listdir(vis))
    assert len(painted) == 3 and all(p.endswith('.png') for p in painted)


def test_missing_pretrained_checkpoint_is_named(tmp_path):
    """A shipped config without its checkpoint file stops with the path."""
    # a stand-in COCO under data/coco, where the config looks
    generate_toy_coco(tmp_path / 'data' / 'coco', num_train=2, num_val=1,
                      image_size=64)
    result = run_tool([
        osp.join(REPO, 'tools', 'train.py'),
        osp.join(REPO, 'configs', 'cascade_convnext_t.py'),
        '--work-dir', str(tmp_path / 'work'), '--cfg-options',
        'model.backbone.arch=test', 'model.neck.in_channels=[16,32,64,128]',
        # the stand-in's classes, or every training image is filtered out
        'train_dataloader.dataset.metainfo.classes='
        '(rectangle,ellipse,triangle)',
        # no AMP on a CPU; N = 3 + ceil(1 / 3) for the 'test' arch
        'optim_wrapper.type=OptimWrapper',
        'optim_wrapper.paramwise_cfg.num_layers=4', '--cfg-new-keys'
    ], str(tmp_path))
    assert result.returncode != 0
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith('FileNotFoundError'), result.stderr[-3000:]
    assert 'checkpoints/convnext_tiny_1k_224.pth' in last_line


@pytest.mark.slow
@pytest.mark.demo('det')
def test_demo_learns(demo_run):
    """The full CPU demo (`tools/demo.py det`, run once per session in the
    background: tests/helpers/demos.py): trains from scratch to a useful
    box AP."""
    log = demo_run.log
    assert demo_run.returncode == 0, log[-5000:]
    assert metric(log, 'coco/bbox_mAP') >= 0.3
    assert metric(log, 'coco/segm_mAP') >= 0.2
    painted = os.listdir(osp.join(demo_run.cwd, 'work_dirs', 'demo_det',
                                  'vis'))
    assert len(painted) == 60
    # the trained demo evaluated in bf16: within 0.01 box and mask AP of fp32
    work_dir = osp.join(demo_run.cwd, 'work_dirs', 'demo_det')
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    keys = ['coco/bbox_mAP', 'coco/segm_mAP']
    found = metrics_by_precision(DEMO_CONFIG, checkpoint, demo_run.cwd, keys)
    for key in keys:
        assert abs(found['bf16'][key] - found['fp32'][key]) <= 0.01, found
