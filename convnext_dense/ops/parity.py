"""The cases on which convnext_dense.ops is compared with compiled mmcv.

``dev/record_mmcv_goldens.py`` runs these cases in an environment
with mmcv's compiled ops (``bash tools/install.sh --mmcv-ops``) and saves
inputs and outputs as golden tensors; ``tests/ops/test_mmcv_ext.py`` runs the
same cases on the default install and compares. Every input is made here from
fixed seeds (numpy's generator and torch's CPU generator give the same numbers
on every version used), so both sides see the same numbers.

Cases cover what the shipped configs do and the edges around it: RoIAlign
aligned and not, sampling ratio 0 and 2, RoIs past the border, degenerate
(zero or negative size) RoIs, no RoI, half and bfloat16 inputs, channels-last
feature maps; NMS with ties, identical boxes, no box and a threshold on a
float32 rounding edge; soft-NMS with each method. Then a whole training step
of small Cascade Mask R-CNN and Mask R-CNN models built from the shipped
configs.
"""
from __future__ import annotations

import copy
import os.path as osp
from typing import Any

import numpy as np
import torch

from convnext_dense.paths import REPO_ROOT

DETECTORS = {'cascade': 'configs/cascade_convnext_t.py',
             'mask_rcnn': 'configs/mask_rcnn_convnext_t.py'}


def _boxes(rng: np.random.RandomState, count: int, size: float,
           past_border: float = 0.) -> np.ndarray:
    """(count, 4) float32 boxes x1, y1, x2, y2 inside [-past, size+past]."""
    low, high = -past_border, size + past_border
    xy = rng.uniform(low, high, (count, 2))
    wh = rng.uniform(1, size / 2, (count, 2))
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def roi_align_cases() -> list[dict[str, Any]]:
    """Inputs of ``mmcv.ops.roi_align``: feature map (float32, NCHW
    contiguous), RoIs, settings, and a gradient for the output."""
    rng = np.random.RandomState(0)
    cases = []
    for aligned in (True, False):
        for sampling_ratio in (0, 2):
            for scale in (1.0, 0.25):
                feat = rng.randn(2, 5, 12, 16).astype(np.float32)
                size = 16 / scale
                boxes = _boxes(rng, 9, size, past_border=size / 4)
                # degenerate: zero width, zero height, and a negative
                # width (which aligned RoIAlign refuses, in mmcv and
                # torchvision alike: then one more zero width)
                boxes[6] = [4, 4, 4, 10]
                boxes[7] = [2, 6, 9, 6]
                boxes[8] = [10, 3, 5, 8] if not aligned else [7, 3, 7, 3]
                index = rng.randint(0, 2, (9, 1)).astype(np.float32)
                cases.append(dict(
                    name=f'aligned={aligned},ratio={sampling_ratio},'
                         f'scale={scale}',
                    input=torch.from_numpy(feat),
                    rois=torch.from_numpy(np.concatenate([index, boxes], 1)),
                    output_size=(7, 7), spatial_scale=scale,
                    sampling_ratio=sampling_ratio, aligned=aligned,
                    grad_output=torch.from_numpy(
                        rng.randn(9, 5, 7, 7).astype(np.float32))))
    feat = rng.randn(1, 3, 8, 8).astype(np.float32)
    cases.append(dict(
        name='no rois', input=torch.from_numpy(feat),
        rois=torch.zeros((0, 5)), output_size=(7, 7), spatial_scale=1.0,
        sampling_ratio=0, aligned=True, grad_output=torch.zeros(0, 3, 7, 7)))
    return cases


def nms_cases() -> list[dict[str, Any]]:
    """Inputs of ``mmcv.ops.nms``: boxes, scores, threshold."""
    rng = np.random.RandomState(1)
    cases = []
    for threshold in (0.3, 0.5, 0.7):
        boxes = _boxes(rng, 200, 64.)
        scores = rng.rand(200).astype(np.float32)
        cases.append(dict(name=f'random,iou={threshold}', boxes=boxes,
                          scores=scores, iou_threshold=threshold))
    # ties: scores from 5 values, boxes on a coarse grid (equal IoUs too)
    boxes = np.round(_boxes(rng, 120, 32.) / 4) * 4
    scores = rng.randint(0, 5, 120).astype(np.float32) / 4
    cases.append(dict(name='ties', boxes=boxes, scores=scores,
                      iou_threshold=0.5))
    # identical boxes, equal scores
    cases.append(dict(name='identical', boxes=np.tile(
        np.array([[1, 2, 11, 12]], np.float32), (6, 1)),
        scores=np.full(6, 0.5, np.float32), iou_threshold=0.5))
    # IoU exactly at the float32 rounding of 0.3 (0.300000012 > 0.3): kept
    # in mmcv's float32 comparison, dropped by one in double precision.
    # Intersection 12, union 40: every number exact, 12 / 40 rounds to it.
    cases.append(dict(name='threshold edge', boxes=np.array(
        [[0, 0, 13, 2], [7, 0, 20, 2]], np.float32),
                      scores=np.array([0.9, 0.8], np.float32),
                      iou_threshold=0.3))
    cases.append(dict(name='no boxes', boxes=np.zeros((0, 4), np.float32),
                      scores=np.zeros(0, np.float32), iou_threshold=0.5))
    for case in cases:
        case['boxes'] = torch.from_numpy(case['boxes'])
        case['scores'] = torch.from_numpy(case['scores'])
    return cases


def soft_nms_cases() -> list[dict[str, Any]]:
    """Inputs of ``mmcv.ops.soft_nms``."""
    rng = np.random.RandomState(2)
    cases = []
    for method in ('linear', 'gaussian', 'naive'):
        for min_score in (1e-3, 0.2):
            boxes = _boxes(rng, 150, 48.)
            scores = rng.rand(150).astype(np.float32)
            scores[::7] = 0.5  # ties
            cases.append(dict(
                name=f'{method},min_score={min_score}',
                boxes=torch.from_numpy(boxes),
                scores=torch.from_numpy(scores), iou_threshold=0.3,
                sigma=0.5, min_score=min_score, method=method))
    return cases


def small_detector(name: str) -> torch.nn.Module:
    """A shipped detector config with the demo's small sizes (a small
    ConvNeXt, 32-channel FPN and heads, 128-wide box FCs, 16 RoIs), built
    with seeded initial weights (the layers' own initialisation; no
    ``init_weights``, whose log is long), in train mode on the CPU."""
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope

    cfg = Config.fromfile(osp.join(REPO_ROOT, DETECTORS[name]))
    model = copy.deepcopy(cfg.model)
    dims, channels = [16, 32, 64, 128], 32
    model.backbone.update(arch=dict(depths=[1, 1, 2, 1], dims=dims),
                          drop_path_rate=0., init_cfg=None)
    model.neck.update(in_channels=dims, out_channels=channels)
    model.rpn_head.update(in_channels=channels, feat_channels=channels)
    roi = model.roi_head
    roi.bbox_roi_extractor.out_channels = channels
    roi.mask_roi_extractor.out_channels = channels
    heads = roi.bbox_head if isinstance(roi.bbox_head, list) else [
        roi.bbox_head]
    for head in heads:
        head.update(in_channels=channels, fc_out_channels=128)
        if 'conv_out_channels' in head:
            head.conv_out_channels = channels
    roi.mask_head.update(in_channels=channels, conv_out_channels=channels)
    model.train_cfg.rpn_proposal.max_per_img = 64
    rcnn = model.train_cfg.rcnn
    for stage in (rcnn if isinstance(rcnn, list) else [rcnn]):
        stage.sampler.num = 16
    init_default_scope('mmdet')
    torch.manual_seed(0)
    detector = revert_sync_batchnorm(MMDET_MODELS.build(model))
    return detector.train()


def detector_step(name: str,
                  dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """One training step (loss and backward) of :func:`small_detector` on a
    fixed batch of mmdet's demo inputs (2 images of 96x96, 8 boxes and
    masks each), in ``dtype``.

    In float32 the gradients depend on the CPU's kernels: oneDNN sums in
    another order on AVX-512/AMX than on AVX2, and with another thread
    count, which moves gradient norms by up to ~1e-3 relative (more where a
    mask target pixel sits at the 0.5 binarisation edge and flips). In
    float64 those orders move results by ~1e-12, so the float64 step is the
    one compared with tight tolerances on every CPU. NMS keeps mmcv's
    float32 arithmetic in both: its kernel takes float32 boxes only, so the
    step hands it float32 (as mmdet does in float32 and half precision).

    Returns:
        ``init``: the sum of each initial parameter (to tell a different
        initialisation from different ops); ``losses``: every logged loss;
        ``grads``: each parameter's gradient norm; all as float64 numbers.
    """
    import importlib
    from mmdet.testing import demo_mm_inputs
    model = small_detector(name)
    init = {key: float(value.double().sum())
            for key, value in model.state_dict().items()
            if value.is_floating_point()}
    model.to(dtype)
    batch = demo_mm_inputs(batch_size=2, image_shapes=[(3, 96, 96)] * 2,
                           num_items=[8, 8], num_classes=80, with_mask=True)
    torch.manual_seed(1)
    data = model.data_preprocessor(batch, True)
    data['inputs'] = data['inputs'].to(dtype)
    ext = importlib.import_module('mmcv.ops.nms').ext_module
    ext_nms = ext.nms

    def float32_nms(boxes, scores, **kwargs):
        return ext_nms(boxes.float(), scores.float(), **kwargs)

    ext.nms = float32_nms
    try:
        losses = model(**data, mode='loss')
    finally:
        ext.nms = ext_nms
    total, log = model.parse_losses(losses)
    total.backward()
    grads = {key: float(param.grad.double().norm())
             for key, param in model.named_parameters()
             if param.grad is not None}
    losses = {k: float(v.detach()) for k, v in log.items()}
    return dict(init=init, losses=losses, grads=grads)
