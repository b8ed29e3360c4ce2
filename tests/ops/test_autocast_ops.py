"""convnext_dense.ops under autocast (bf16 and fp16 feature maps).

- RoIAlign of a reduced-precision map equals float32 RoIAlign of the same
  values (upcast exactly), rounded once to the map's dtype: the stand-in
  computes in float32, as it did before the copy was kept.
- The float32 copy of a map is made once for any number of RoI extractions
  of it (a Cascade R-CNN pools each map six times per image), and made
  again after the map changes in place.
- NMS of bf16/fp16 boxes keeps what float32 NMS of the same values keeps
  (torchvision's CPU NMS has no reduced-precision kernel).
"""
from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import convnext_dense  # noqa: F401  (installs the ops)
import mmcv.ops  # noqa: E402
from convnext_dense.ops import mmcv_ops_source

pytestmark = pytest.mark.skipif(
    mmcv_ops_source() != 'torchvision',
    reason='mmcv has its compiled ops here: the stand-ins are not in use')


def _map_and_rois(dtype: torch.dtype):
    generator = torch.Generator().manual_seed(0)
    feature = torch.randn(2, 8, 24, 20, generator=generator).to(dtype)
    xy = torch.rand(12, 2, generator=generator) * 60
    wh = torch.rand(12, 2, generator=generator) * 30 + 1
    batch = torch.randint(0, 2, (12, 1), generator=generator).float()
    rois = torch.cat([batch, xy, xy + wh], dim=1)  # (12, 5)
    return feature, rois


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_roi_align_of_reduced_map_is_float32_result_rounded(dtype):
    feature, rois = _map_and_rois(dtype)
    layer = mmcv.ops.RoIAlign((7, 7), spatial_scale=0.25, sampling_ratio=0,
                              aligned=True)
    with torch.no_grad(), torch.autocast('cpu', dtype=dtype):
        out = layer(feature, rois)
    expected = layer(feature.float(), rois).to(dtype)
    assert out.dtype == dtype
    assert torch.equal(out, expected)


def _feature_casts(prof, shape) -> int:
    return sum(event.count for event in prof.key_averages(
        group_by_input_shape=True)
        if event.key == 'aten::_to_copy' and event.input_shapes
        and list(event.input_shapes[0]) == list(shape))


def test_map_cast_once_for_many_extractions_and_again_after_a_change():
    feature, rois = _map_and_rois(torch.bfloat16)
    layer = mmcv.ops.RoIAlign((7, 7), spatial_scale=0.25, sampling_ratio=0,
                              aligned=True)
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU],
                                  record_shapes=True) as prof:
        outs = [layer(feature, rois) for _ in range(6)]
    assert _feature_casts(prof, feature.shape) == 1  # 6 before the cache
    assert all(torch.equal(out, outs[0]) for out in outs)

    with torch.inference_mode():  # no version counter: converted each time
        inference = feature.clone()
        assert torch.equal(layer(inference, rois), outs[0])
        inference.mul_(2)
        assert not torch.equal(layer(inference, rois), outs[0])

    feature.mul_(2)  # in place: a new version of the same tensor
    with torch.no_grad():
        doubled = layer(feature, rois)
    assert torch.equal(doubled, layer(feature.float(), rois).bfloat16())
    assert not torch.equal(doubled, outs[0])


@pytest.mark.parametrize('dtype', [torch.bfloat16, torch.float16])
def test_nms_of_reduced_boxes_keeps_what_float32_keeps(dtype):
    generator = torch.Generator().manual_seed(1)
    xy = torch.rand(200, 2, generator=generator) * 100
    boxes = torch.cat([xy, xy + torch.rand(200, 2, generator=generator) * 40
                       + 2], dim=1).to(dtype)
    scores = torch.rand(200, generator=generator).to(dtype)
    dets, keep = mmcv.ops.nms(boxes, scores, iou_threshold=0.5)
    _, expected = mmcv.ops.nms(boxes.float(), scores.float(),
                               iou_threshold=0.5)
    assert 0 < len(keep) < 200
    assert torch.equal(keep, expected)
    assert dets.dtype == dtype
