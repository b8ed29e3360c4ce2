"""The OpenVINO backend (convnext_dense/deploy/runtime.py): the same graphs
and the same parity checks as the onnxruntime backend
(tests/deploy/test_onnx_export.py), and a graph OpenVINO cannot convert
refused with the operation named."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip('openvino')
pytest.importorskip('onnxruntime')

from convnext_dense.apis.inference import Inferencer  # noqa: E402
from convnext_dense.apis.export import export_onnx  # noqa: E402
from convnext_dense.deploy.runtime import (  # noqa: E402
    OpenVinoSession, UnsupportedByBackendError, make_session)
from convnext_dense.engine.precision import PrecisionError  # noqa: E402

from .test_onnx_export import (SIZES, assert_same_detections,  # noqa: E402
                               read_rgb, tool, write_images)
from .test_onnx_export import det_models, seg_model  # noqa: E402,F401


def test_upernet_logits_equal_onnxruntime(seg_model, tmp_path):  # noqa: F811
    config, checkpoint = seg_model
    path = export_onnx(config, checkpoint, str(tmp_path / 'u.onnx'),
                       shape=SIZES[0])
    openvino = OpenVinoSession(path, threads=1)
    assert openvino.precision == 'f32'
    onnxruntime = make_session(path, threads=1)
    for height, width in SIZES:
        pixels = (torch.rand(1, 3, height, width) * 255).numpy()
        [expected] = onnxruntime.run(None, {'image': pixels})
        [got] = openvino.run(None, {'image': pixels})
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= 1e-3
        assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.999


def test_segmentor_through_the_inferencer(seg_model, tmp_path):  # noqa: F811
    config, checkpoint = seg_model
    path = export_onnx(config, checkpoint, str(tmp_path / 'u.onnx'))
    torch_model = Inferencer(config, checkpoint)
    openvino = Inferencer(config, path, backend='openvino')
    for file in write_images(tmp_path, [(150, 90)]):
        image = read_rgb(file)[..., ::-1].copy()
        expected, got = torch_model.predict(image), openvino.predict(image)
        assert np.abs(got.seg_logits.data.numpy() -
                      expected.seg_logits.data.numpy()).max() <= 1e-3
        same = got.pred_sem_seg.data == expected.pred_sem_seg.data
        assert same.float().mean() >= 0.999


def test_unconvertible_graph_is_refused_naming_the_op(tmp_path):
    import onnx
    from onnx import TensorProto, helper
    value = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph(
        [helper.make_node('Mystery', ['x'], ['y'], domain='com.example')],
        'g', [value], [helper.make_tensor_value_info(
            'y', TensorProto.FLOAT, [1, 4])])
    path = tmp_path / 'mystery.onnx'
    onnx.save(helper.make_model(graph, opset_imports=[
        helper.make_opsetid('', 17), helper.make_opsetid('com.example', 1)]),
        path)
    with pytest.raises(UnsupportedByBackendError,
                       match=r'mystery.onnx: OpenVINO cannot convert it: '
                       r'No conversion rule found for operations: '
                       r'com.example.Mystery'):
        OpenVinoSession(str(path))


def test_precisions_the_backends_refuse(seg_model, tmp_path):  # noqa: F811
    config, _ = seg_model
    path = str(tmp_path / 'none.onnx')
    with pytest.raises(PrecisionError, match='openvino backend runs fp32 '
                       'or bf16'):
        Inferencer(config, path, backend='openvino', precision='fp16')
    with pytest.raises(PrecisionError, match='onnxruntime backend runs fp32'):
        Inferencer(config, path, backend='onnxruntime', precision='bf16')


@pytest.mark.slow
@pytest.mark.parametrize('name', ['mask_rcnn', 'cascade'])
def test_detector_end_to_end(name, det_models, tmp_path):  # noqa: F811
    config, checkpoint = det_models[name]
    path = export_onnx(config, checkpoint, str(tmp_path / f'{name}.onnx'))
    torch_model = Inferencer(config, checkpoint, score_thr=0.)
    openvino = Inferencer(config, path, backend='openvino')
    for file in write_images(tmp_path, [(120, 90), (80, 100)]):
        image = read_rgb(file)[..., ::-1].copy()
        expected = torch_model.predict(image).pred_instances
        got = openvino.predict(image).pred_instances
        assert got.masks.shape[1:] == image.shape[:2]
        assert_same_detections(expected, got)


@pytest.mark.slow
def test_infer_tool_paints_the_same_pngs(seg_model, tmp_path):  # noqa: F811
    config, checkpoint = seg_model
    onnx_file = str(tmp_path / 'model.onnx')
    tool('export_onnx.py')([config, checkpoint, '--out', onnx_file])
    write_images(tmp_path / 'in', [(120, 90), (80, 100)])
    written = {}
    for backend, model in (('onnxruntime', onnx_file),
                           ('openvino', onnx_file)):
        written[backend] = tool('infer.py')([
            config, model, str(tmp_path / 'in'), '--out-dir',
            str(tmp_path / backend), '--backend', backend,
            '--precision', 'fp32'])
    for a, b in zip(written['onnxruntime'], written['openvino']):
        diff = np.abs(read_rgb(a).astype(int) - read_rgb(b)).max(axis=2)
        assert (diff > 0).mean() < 1e-3
