"""ONNX export of DINO: backbone + neck, run by onnxruntime and compared
with the PyTorch model (tiny 'test' backbone, the configs/dino neck with
random weights); the whole detector is refused with its reason
(convnext_dense/deploy/graphs.py, check_detector)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip('onnxruntime')
pytest.importorskip('onnx')
pytest.importorskip('mmdet')

from configs.test_dino_configs import load, tiny_dino  # noqa: E402
from convnext_dense.deploy.graphs import UnsupportedModelError  # noqa: E402
from convnext_dense.deploy.onnx_export import export_model  # noqa: E402
from convnext_dense.deploy.runtime import make_session  # noqa: E402
from helpers.random_weights import randomize_  # noqa: E402

CONFIG = 'dino_convnext_t_in22k_384_4scale_12e'


def run_onnx(path: str, *inputs: np.ndarray) -> list[np.ndarray]:
    session = make_session(path, threads=1)
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, inputs)))


@pytest.fixture(scope='module')
def model():
    return randomize_(tiny_dino(load(CONFIG)), seed=0).eval()


def test_backbone_and_neck(model, tmp_path):
    path = export_model(model, 'det', str(tmp_path / 'n.onnx'), part='neck',
                        shape=(96, 128))
    for height, width in ((96, 128), (64, 64)):
        x = torch.randn(1, 3, height, width)
        with torch.no_grad():
            expected = model.neck(model.backbone(x))
        got = run_onnx(path, x.numpy())
        assert len(got) == 4  # strides 8, 16, 32 and the extra 64
        for e, g in zip(expected, got):
            assert g.shape == tuple(e.shape)
            assert np.abs(g - e.numpy()).max() <= 1e-4


def test_end_to_end_is_refused_with_the_reason(model, tmp_path):
    with pytest.raises(UnsupportedModelError,
                       match="DINO does not export end to end: .* scores "
                       "differ from mmdet's"):
        export_model(model, 'det', str(tmp_path / 'x.onnx'),
                     shape=(64, 96), dynamic=False)
    assert not (tmp_path / 'x.onnx').exists()
