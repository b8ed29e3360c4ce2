"""Every shipped config runs on the default install (mmcv-lite + the ops of
convnext_dense.ops) and reaches no mmcv op that the package does not provide.

Each detection and segmentation config is built with a small backbone (the
heads keep their size), and runs a training step (loss and backward), a
prediction, and test-time augmentation: mmseg's ``SegTTAModel`` over the
config's own multi-scale + flip views for UperNet, mmdet's ``DetTTAModel``
(flip, boxes merged by batched NMS; it has no mask merging) for the
detectors. Every call into
``mmcv._ext`` is recorded; an op without a stand-in would raise
``NotImplementedError`` naming itself.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import convnext_dense  # noqa: F401
from convnext_dense.ops import OPS, mmcv_ops_source

from configs import test_detection_configs as det  # noqa: E402
from configs import test_segmentation_configs as seg  # noqa: E402

pytestmark = [
    pytest.mark.skipif(
        mmcv_ops_source() != 'torchvision',
        reason='mmcv has its compiled ops here: the stand-ins are not in use'),
    pytest.mark.slow,  # 15 configs, about 3 min
]


@pytest.fixture
def calls(monkeypatch) -> list[str]:
    """Names of the mmcv._ext functions called while the test runs."""
    ext = sys.modules['mmcv._ext']
    seen: list[str] = []
    for op in OPS:
        def record(*args, _op=op, **kwargs):
            seen.append(_op.__name__)
            return _op(*args, **kwargs)
        monkeypatch.setattr(ext, op.__name__, record)
    return seen


def _det_inputs():
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    mask = np.zeros((1, 64, 64), np.uint8)
    mask[0, 10:50, 8:40] = 1
    sample = DetDataSample(metainfo=dict(
        img_shape=(64, 64), ori_shape=(64, 64), scale_factor=(1., 1.),
        flip=False, flip_direction=None, img_id=0))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[8., 10., 40., 50.]]), labels=torch.tensor([3]),
        masks=BitmapMasks(mask, 64, 64))
    return image, sample


@pytest.mark.parametrize('name', det.CONFIGS)
def test_detection_config_train_predict_tta(name, calls) -> None:
    from mmdet.models.test_time_augs import DetTTAModel
    torch.manual_seed(0)
    model = det.tiny_detector(det.load(name))
    image, sample = _det_inputs()
    data = model.data_preprocessor(dict(inputs=[image],
                                        data_samples=[sample]), True)
    total, _ = model.parse_losses(model(**data, mode='loss'))
    total.backward()
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(
            dict(inputs=[image], data_samples=[sample]), False)
        [result] = model(**data, mode='predict')
        assert 'masks' in result.pred_instances
        # flip test-time augmentation, merged by batched NMS (mmdet's
        # DetTTAModel merges boxes only: the mask head is left out)
        model.roi_head.mask_head = None
        tta = DetTTAModel(module=model, tta_cfg=dict(
            nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
        flipped = sample.clone()
        flipped.set_metainfo(dict(flip=True, flip_direction='horizontal'))
        views = [model.data_preprocessor(
            dict(inputs=[img], data_samples=[s]), False)
            for img, s in ((image, sample), (image.flip(-1), flipped))]
        merged = tta.test_step(dict(
            inputs=[[v['inputs'][0]] for v in views],
            data_samples=[[v['data_samples'][0]] for v in views]))
        assert len(merged) == 1
    provided = {op.__name__ for op in OPS}
    assert {'roi_align_forward', 'roi_align_backward', 'nms'} <= set(calls)
    assert set(calls) <= provided


@pytest.mark.parametrize('name', seg.CONFIGS)
def test_segmentation_config_train_predict_tta(name, calls) -> None:
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    cfg = seg.load(name)
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(seg.tiny_model_cfg(cfg)))
    images, samples = seg.two_samples(num_classes=150)
    data = model.data_preprocessor(dict(inputs=images, data_samples=samples),
                                   True)
    losses = model(**data, mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    model.eval()
    tta = MODELS.build(dict(cfg.tta_model, module=model))
    with torch.no_grad():
        data = model.data_preprocessor(
            dict(inputs=images[:1], data_samples=samples[:1]), False)
        model(**data, mode='predict')  # sliding window
        views = []
        for ratio in (0.75, 1.0):
            for flip in (False, True):
                size = int(64 * ratio)
                image = torch.nn.functional.interpolate(
                    images[0][None].float(), size=(size, size))[0]
                image = image.flip(-1) if flip else image
                sample = samples[0].clone()
                sample.set_metainfo(dict(img_shape=(size, size), flip=flip,
                                         img_path='toy.png',
                                         flip_direction='horizontal'))
                views.append(model.data_preprocessor(
                    dict(inputs=[image.byte()], data_samples=[sample]),
                    False))
        [result] = tta.test_step(dict(
            inputs=[[v['inputs'][0]] for v in views],
            data_samples=[[v['data_samples'][0]] for v in views]))
        assert result.pred_sem_seg.data.shape == (1, 64, 64)
    # UperNet reaches no compiled mmcv op at all
    assert calls == []
