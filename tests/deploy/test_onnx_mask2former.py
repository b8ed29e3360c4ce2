"""ONNX export of Mask2Former (convnext_dense/deploy/), against onnxruntime.

The model is the CPU demo's (configs/demo/mask2former_convnext_demo.py:
tiny backbone, 32-channel head, 16 queries, 3 decoder layers) with random
weights. The whole semantic graph (deformable attention through
GridSample, masked attention, the class x mask combination, the test-time
padding to a multiple of 32 and the crop back) is compared with mmseg's own
inference through the Inferencer on images whose sides are not multiples of
32: logits within 1e-4, argmax equal on >= 99.9% of the pixels. Backbone +
pixel decoder ('neck') is compared with the PyTorch modules at two sizes.
What does not export is refused with a named reason.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip('onnxruntime')
pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

from convnext_dense.apis.export import export_onnx  # noqa: E402
from convnext_dense.apis.inference import Inferencer  # noqa: E402
from convnext_dense.deploy.graphs import UnsupportedModelError  # noqa: E402
from convnext_dense.deploy.onnx_export import export_model  # noqa: E402
from convnext_dense.tasks import build_model  # noqa: E402
from convnext_dense.toy_data.toy_ade import CLASSES, PALETTE  # noqa: E402
from mmengine.config import Config  # noqa: E402

from .test_onnx_export import run_onnx, seg_predictions  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / 'configs' / 'demo' / 'mask2former_convnext_demo.py')
COCO = str(REPO / 'configs' / 'mask2former' /
           'mask2former_convnext_t_coco_instance.py')


@pytest.fixture(scope='module')
def m2f_model(tmp_path_factory) -> tuple[str, str]:
    """The demo config and a checkpoint of its randomly initialised model,
    as a training run leaves them."""
    folder = tmp_path_factory.mktemp('m2f')
    torch.manual_seed(0)
    model = build_model(Config.fromfile(DEMO))
    model.init_weights()
    checkpoint = folder / 'm2f.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict(
        dataset_meta=dict(classes=CLASSES, palette=[list(c)
                                                    for c in PALETTE]))),
               checkpoint)
    return DEMO, str(checkpoint)


@pytest.mark.slow  # 23 s on two busy cores, most of it tracing
def test_semantic_graph_equals_mmseg(m2f_model, tmp_path):
    config, checkpoint = m2f_model
    path = export_onnx(config, checkpoint, str(tmp_path / 'm.onnx'),
                       shape=(96, 128))
    # resized by the test pipeline to 128 px high: 213x128 and 128x201,
    # neither side of the second a multiple of 32 (padded in the graph)
    for image, expected, got in seg_predictions(config, checkpoint, path,
                                                tmp_path):
        e_logits = expected.seg_logits.data.numpy()
        g_logits = got.seg_logits.data.numpy()
        assert g_logits.shape == e_logits.shape == (len(CLASSES),
                                                    *image.shape[:2])
        assert np.abs(g_logits - e_logits).max() <= 1e-4
        same = got.pred_sem_seg.data == expected.pred_sem_seg.data
        assert same.float().mean() >= 0.999


def test_pixel_decoder_graph(m2f_model, tmp_path):
    """part='neck': the stride-4 mask features and the pixel decoder's
    three levels (strides 32, 16, 8), at the traced size and another."""
    config, checkpoint = m2f_model
    path = export_onnx(config, checkpoint, str(tmp_path / 'n.onnx'),
                       part='neck', shape=(64, 64))
    model = Inferencer(config, checkpoint).model
    for height, width in [(64, 64), (96, 160)]:
        x = torch.randn(1, 3, height, width)
        with torch.no_grad():
            mask_feature, levels = model.decode_head.pixel_decoder(
                model.backbone(x))
        expected = [mask_feature, *levels]
        got = run_onnx(path, x.numpy())
        assert [g.shape for g in got] == [
            (1, 32, height // s, width // s) for s in (4, 32, 16, 8)]
        for g, e in zip(got, expected):
            assert np.abs(g - e.numpy()).max() <= 1e-4


def test_what_does_not_export_is_named(tmp_path):
    torch.manual_seed(0)
    model = build_model(Config.fromfile(DEMO)).eval()
    with pytest.raises(UnsupportedModelError, match='GridSample'):
        export_model(model, 'seg', str(tmp_path / 'a.onnx'), opset=15)
    model.data_preprocessor.test_cfg = dict(size=(128, 128))
    with pytest.raises(UnsupportedModelError, match='fixed size'):
        export_model(model, 'seg', str(tmp_path / 'b.onnx'))
    assert not any(tmp_path.iterdir())  # nothing written


@pytest.mark.slow  # 25 s on two busy cores: the full 256-channel head
def test_instance_model_exports_its_pixel_decoder_only(tmp_path):
    cfg = Config.fromfile(COCO)
    cfg.model.backbone.update(arch='test', init_cfg=None)
    cfg.model.panoptic_head.in_channels = [16, 32, 64, 128]
    torch.manual_seed(0)
    detector = build_model(cfg).eval()
    with pytest.raises(UnsupportedModelError, match='only two-stage'):
        export_model(detector, 'det', str(tmp_path / 'c.onnx'))
    assert not any(tmp_path.iterdir())  # nothing written

    path = export_model(detector, 'det', str(tmp_path / 'n.onnx'),
                        part='neck', shape=(64, 96))
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        mask_feature, levels = detector.panoptic_head.pixel_decoder(
            detector.backbone(x))
    for got, expected in zip(run_onnx(path, x.numpy()),
                             [mask_feature, *levels], strict=True):
        assert np.abs(got - expected.numpy()).max() <= 1e-4
