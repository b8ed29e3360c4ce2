"""ONNX export and the onnxruntime runtime (convnext_dense/deploy/).

Every graph is compared with the PyTorch model it came from, on the same
weights, at the size it was traced at and at another, non-square size
(the graphs are dynamic): backbone and backbone + neck within 1e-4;
UperNet logits within 1e-3 and the argmax equal on >= 99.9% of the pixels
(whole image and sliding window); Mask R-CNN and Cascade Mask R-CNN keep
the same detections as mmdet's own ``predict`` (labels equal, boxes within
1e-2 px, scores within 1e-3, mask IoU >= 0.99 per instance), and
``tools/infer.py --backend onnxruntime`` paints the same PNGs. The models
are the tiny ones of tests/apis/test_inference.py (real configs, 'test'
arch, narrow heads, random weights), which keep 20 detections with
distinct scores and non-empty masks.
"""
from __future__ import annotations

import runpy
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip('onnxruntime')
pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

from apis.test_inference import (DET_CONFIG, read_rgb,  # noqa: E402
                                 write_images, write_model)
from convnext_dense.apis.export import export_onnx  # noqa: E402
from convnext_dense.apis.inference import Inferencer  # noqa: E402
from convnext_dense.deploy.graphs import UnsupportedModelError  # noqa: E402
from convnext_dense.deploy.onnx_export import (  # noqa: E402
    export_model, read_metadata)
from convnext_dense.deploy.runtime import make_session  # noqa: E402
from convnext_dense.models.convnext import ConvNeXt  # noqa: E402
from convnext_dense.tasks import build_model  # noqa: E402
from mmengine.config import Config  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SIZES = [(224, 224), (160, 96)]  # traced at the first; (H, W)

MASK_RCNN_CONFIG = DET_CONFIG.replace('cascade_convnext_t',
                                      'mask_rcnn_convnext_t').replace(
    """bbox_head=[
            dict(head, in_channels=channels, conv_out_channels=channels,
                 fc_out_channels=64, num_classes=num_classes)
            for head in _base_.model.roi_head.bbox_head
        ],""", """bbox_head=dict(in_channels=channels, fc_out_channels=64,
                       num_classes=num_classes),""")


def run_onnx(path: str, *inputs: np.ndarray) -> list[np.ndarray]:
    session = make_session(path, threads=1)
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, inputs)))


# -- backbone and backbone + neck --------------------------------------------

@pytest.mark.parametrize('arch', ['test', 'v2-test'])
def test_backbone(arch, tmp_path):
    torch.manual_seed(0)
    backbone = ConvNeXt(arch=arch).eval()
    backbone.init_weights()
    for param in backbone.parameters():  # layer scale / GRN off identity
        param.data.add_(torch.randn_like(param) * 0.05)
    model = torch.nn.Module()
    model.backbone = backbone
    path = export_model(model, 'det', str(tmp_path / 'b.onnx'),
                        part='backbone', shape=SIZES[0])
    assert read_metadata(path)['part'] == 'backbone'
    for height, width in SIZES:
        for batch in (1, 2):
            x = torch.randn(batch, 3, height, width)
            with torch.no_grad():
                expected = backbone(x)
            got = run_onnx(path, x.numpy())
            assert len(got) == 4
            for e, g in zip(expected, got):
                assert g.shape == tuple(e.shape)
                assert np.abs(g - e.numpy()).max() <= 1e-4


# -- fp16 backbone: GRN and LayerNorm statistics in float32 (issue #16) -------

def _input_types(model) -> dict[str, int]:
    """ONNX element type of every tensor of the graph (shape inference)."""
    import onnx

    graph = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type
             for v in (*graph.value_info, *graph.input, *graph.output)}
    types.update({t.name: t.data_type for t in graph.initializer})
    return types


def test_fp16_v2_backbone_keeps_statistics_in_float32(tmp_path):
    """A V2 backbone ('v2-test', GRN in every block) exported with
    ``fp16=True``, run by onnxruntime on the CPU on a 384x512 input whose
    activations at the stage-0 GRN have magnitude about 5 (the largest
    |value| per position; block LayerNorm weights x10).

    The graph computes in float16 (every Conv and MatMul), but each GRN
    casts its input to float32 before ``ReduceL2`` and takes the channel
    mean in float32, and every LayerNorm is an opset-17
    ``LayerNormalization`` with float32 statistics (``stash_type`` 1, the
    default). Its outputs are finite and within 1e-2 (relative to the
    largest |value|) of the float32 PyTorch backbone; measured 1.1e-3 to
    1.5e-3 over the four maps. The old formulation, the sum of squares in
    float16 (what the exporter emitted before: ``ReduceL2`` on the float16
    input, the Cast after it), overflows here: a stage-0 channel sums to up
    to 9e4 > 65504, inf, and GRN's inf / mean(inf) makes the output NaN
    (computed below with the emulation of tests/models/test_convnext.py).
    """
    import onnx
    from onnx import TensorProto

    from models.test_convnext import _grn_with_fp16_sum_of_squares

    torch.manual_seed(0)
    backbone = ConvNeXt(arch='v2-test').eval()
    backbone.init_weights()
    for param in backbone.parameters():  # GRN off identity
        param.data.add_(torch.randn_like(param) * 0.05)
    blocks = [block for stage in backbone.stages for block in stage]
    with torch.no_grad():
        for block in blocks:
            block.norm.weight.mul_(10)
    model = torch.nn.Module()
    model.backbone = backbone
    path = export_model(model, 'det', str(tmp_path / 'b16.onnx'),
                        part='backbone', shape=(224, 224), fp16=True)
    assert read_metadata(path)['compute_dtype'] == 'float16'

    proto = onnx.load(path)
    types = _input_types(proto)
    producer = {out: node for node in proto.graph.node
                for out in node.output}
    nodes = proto.graph.node
    assert {types[n.input[0]] for n in nodes
            if n.op_type in ('Conv', 'MatMul')} == {TensorProto.FLOAT16}
    reductions = [n for n in nodes if n.op_type.startswith('Reduce')]
    assert sorted(n.op_type for n in reductions) == \
        ['ReduceL2'] * len(blocks) + ['ReduceMean'] * len(blocks)
    for node in reductions:
        assert '/grn/' in node.name, node.name
        assert types[node.input[0]] == TensorProto.FLOAT, node.name
        if node.op_type == 'ReduceL2':
            cast = producer[node.input[0]]
            assert cast.op_type == 'Cast', node.name
            assert types[cast.input[0]] == TensorProto.FLOAT16
    norms = [n for n in nodes if n.op_type == 'LayerNormalization']
    assert len(norms) == 3 * 4  # stem/downsample, block, output, per stage
    for node in norms:
        stash = [a.i for a in node.attribute if a.name == 'stash_type']
        assert stash in ([], [TensorProto.FLOAT]), node.name
        assert types[node.input[0]] == TensorProto.FLOAT16

    seen = []
    blocks[0].grn.register_forward_hook(
        lambda mod, args, out: seen.append(args[0]))
    x = torch.randn(1, 3, 384, 512)
    with torch.no_grad():
        expected = backbone(x)
    grn_in = seen[0]  # (1, 96, 128, 64)
    assert 3 < grn_in.abs().amax(dim=-1).mean() < 10
    assert grn_in.pow(2).sum(dim=(1, 2)).max() > 65504
    with torch.no_grad():
        old = _grn_with_fp16_sum_of_squares(grn_in.half(),
                                            blocks[0].grn.half())
    assert torch.isnan(old).any()

    got = run_onnx(path, x.numpy())
    for e, g in zip(expected, got):
        e = e.numpy()
        assert g.dtype == np.float32 and g.shape == e.shape
        assert np.isfinite(g).all()
        assert np.abs(g - e).max() / np.abs(e).max() <= 1e-2


def test_fp16_export_is_refused_where_unchecked(tmp_path):
    model = torch.nn.Module()
    model.backbone = ConvNeXt(arch='v2-test').eval()
    with pytest.raises(UnsupportedModelError, match='opset >= 17'):
        export_model(model, 'det', str(tmp_path / 'b.onnx'),
                     part='backbone', opset=16, fp16=True)
    with pytest.raises(UnsupportedModelError, match="'backbone' and 'neck'"):
        export_model(model, 'seg', str(tmp_path / 'm.onnx'), fp16=True)


@pytest.fixture(scope='module')
def det_models(tmp_path_factory):
    """Config and checkpoint of tiny Cascade and Mask R-CNN models."""
    folder = tmp_path_factory.mktemp('det')
    cascade = write_model(folder, 'det')
    config = folder / 'tiny_mask_rcnn.py'
    config.write_text(MASK_RCNN_CONFIG.format(repo=REPO, num_classes=3))
    torch.manual_seed(1)
    model = build_model(Config.fromfile(str(config)))
    model.init_weights()
    checkpoint = folder / 'tiny_mask_rcnn.pth'
    torch.save(dict(state_dict=model.state_dict(),
                    meta=dict(dataset_meta=dict(
                        classes=('rectangle', 'ellipse', 'triangle')))),
               checkpoint)
    return dict(cascade=cascade, mask_rcnn=(str(config), str(checkpoint)))


def test_backbone_and_neck(det_models, tmp_path):
    config, checkpoint = det_models['cascade']
    path = export_onnx(config, checkpoint, str(tmp_path / 'n.onnx'),
                       part='neck')
    model = build_model(Config.fromfile(config))
    model.load_state_dict(torch.load(checkpoint)['state_dict'])
    for height, width in SIZES:
        x = torch.randn(1, 3, height, width)
        with torch.no_grad():
            expected = model.neck(model.backbone(x))
        got = run_onnx(path, x.numpy())
        assert len(got) == 5  # FPN: strides 4..64
        for e, g in zip(expected, got):
            assert np.abs(g - e.numpy()).max() <= 1e-4


# -- detection end to end -----------------------------------------------------

def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2:] - x[:, :2]).prod(-1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter)


def assert_same_detections(expected, got) -> None:
    """Same kept detections; matched by box (scores may tie in order)."""
    e_boxes, g_boxes = expected.bboxes.numpy(), got.bboxes.numpy()
    assert len(e_boxes) == len(g_boxes) > 5
    match = box_iou(e_boxes, g_boxes).argmax(axis=1)
    assert sorted(match.tolist()) == list(range(len(e_boxes)))
    assert np.abs(g_boxes[match] - e_boxes).max() <= 1e-2
    assert np.abs(got.scores.numpy()[match] -
                  expected.scores.numpy()).max() <= 1e-3
    assert (got.labels.numpy()[match] == expected.labels.numpy()).all()
    e_masks, g_masks = expected.masks.numpy(), got.masks.numpy()[match]
    assert e_masks.shape == g_masks.shape
    inter = (e_masks & g_masks).reshape(len(match), -1).sum(1)
    union = (e_masks | g_masks).reshape(len(match), -1).sum(1)
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    assert iou.min() >= 0.99, iou
    assert (union > 0).mean() > 0.5  # most masks are not empty


@pytest.mark.slow
@pytest.mark.parametrize('name', ['mask_rcnn', 'cascade'])
def test_detector_end_to_end(name, det_models, tmp_path):
    config, checkpoint = det_models[name]
    path = export_onnx(config, checkpoint, str(tmp_path / f'{name}.onnx'))
    assert read_metadata(path)['classes'] == [
        'rectangle', 'ellipse', 'triangle']
    torch_model = Inferencer(config, checkpoint, score_thr=0.)
    onnx_model = Inferencer(config, path, backend='onnxruntime')
    # resized to 96x72 (the traced size is 96x96) and 77x96
    for file in write_images(tmp_path, [(120, 90), (80, 100)]):
        image = read_rgb(file)[..., ::-1].copy()
        expected = torch_model.predict(image).pred_instances
        got = onnx_model.predict(image).pred_instances
        assert got.masks.shape[1:] == image.shape[:2]
        assert_same_detections(expected, got)


def test_unsupported_detector_is_named(det_models, tmp_path):
    config, checkpoint = det_models['mask_rcnn']
    cfg = Config.fromfile(config)
    cfg.model.test_cfg.rcnn.nms = dict(type='soft_nms', iou_threshold=0.5)
    model = build_model(cfg)
    with pytest.raises(UnsupportedModelError, match='soft_nms'):
        export_model(model, 'det', str(tmp_path / 'x.onnx'))
    with pytest.raises(UnsupportedModelError, match='opset 11'):
        export_model(build_model(Config.fromfile(config)), 'det',
                     str(tmp_path / 'x.onnx'), opset=11)


# -- segmentation -------------------------------------------------------------

@pytest.fixture(scope='module')
def seg_model(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp('seg'), 'seg')


def test_upernet_logits(seg_model, tmp_path):
    config, checkpoint = seg_model
    path = export_onnx(config, checkpoint, str(tmp_path / 'u.onnx'),
                       shape=SIZES[0])
    inferencer = Inferencer(config, checkpoint)
    model = inferencer.model
    for height, width in SIZES:
        pixels = torch.rand(1, 3, height, width) * 255
        with torch.no_grad():
            data = model.data_preprocessor(dict(inputs=[pixels[0]]), False)
            expected = model.encode_decode(
                data['inputs'], [dict(img_shape=(height, width))])
        [got] = run_onnx(path, pixels.numpy())
        assert got.shape == tuple(expected.shape)
        assert np.abs(got - expected.numpy()).max() <= 1e-3
        same = got.argmax(1) == expected.numpy().argmax(1)
        assert same.mean() >= 0.999


def seg_predictions(config: str, checkpoint: str, onnx_path: str,
                    tmp_path: Path):
    """``(image, PyTorch prediction, onnxruntime prediction)`` for two BGR
    test images (150x90 and 70x110) of the same config and weights."""
    torch_model = Inferencer(config, checkpoint)
    onnx_model = Inferencer(config, onnx_path, backend='onnxruntime')
    for file in write_images(tmp_path, [(150, 90), (70, 110)]):
        image = read_rgb(file)[..., ::-1].copy()
        yield image, torch_model.predict(image), onnx_model.predict(image)


@pytest.mark.slow
@pytest.mark.parametrize('mode', ['whole', 'slide'])
def test_upernet_runtime(mode, seg_model, tmp_path):
    """The runtime's whole-image and sliding-window results against
    mmseg's own inference of the same config."""
    config, checkpoint = seg_model
    if mode == 'slide':
        cfg = Config.fromfile(config)
        cfg.model.test_cfg = dict(mode='slide', crop_size=(48, 48),
                                  stride=(32, 32))
        config = str(tmp_path / 'slide.py')
        cfg.dump(config)
    path = export_onnx(config, checkpoint, str(tmp_path / 'u.onnx'))
    for image, expected, got in seg_predictions(config, checkpoint, path,
                                                tmp_path):
        e_logits = expected.seg_logits.data.numpy()
        g_logits = got.seg_logits.data.numpy()
        assert g_logits.shape == e_logits.shape
        assert np.abs(g_logits - e_logits).max() <= 1e-3
        same = got.pred_sem_seg.data == expected.pred_sem_seg.data
        assert same.float().mean() >= 0.999


# -- the tools ----------------------------------------------------------------

def tool(name: str):
    return runpy.run_path(str(REPO / 'tools' / name), run_name=name)['main']


@pytest.mark.slow
@pytest.mark.parametrize('task', ['det', 'seg'])
def test_tools_paint_the_same_pngs(task, det_models, seg_model, tmp_path):
    config, checkpoint = det_models['cascade'] if task == 'det' else \
        seg_model
    onnx_file = str(tmp_path / 'model.onnx')
    tool('export_onnx.py')([config, checkpoint, '--out', onnx_file])
    write_images(tmp_path / 'in', [(120, 90), (80, 100)])
    written = {}
    for backend, model in (('pytorch', checkpoint),
                           ('onnxruntime', onnx_file)):
        # mmdet's visualizer jitters each mask colour with np.random
        np.random.seed(0)
        written[backend] = tool('infer.py')([
            config, model, str(tmp_path / 'in'), '--out-dir',
            str(tmp_path / backend), '--score-thr', '0.2', '--backend',
            backend])
    assert len(written['pytorch']) == 2
    for a, b in zip(written['pytorch'], written['onnxruntime']):
        assert Path(a).name == Path(b).name
        diff = np.abs(read_rgb(a).astype(int) - read_rgb(b)).max(axis=2)
        # box outlines drawn at coordinates 1e-5 px apart may round to
        # another pixel; everything else is the same
        assert (diff > 0).mean() < 1e-3


def test_export_tool_refuses_missing_checkpoint(seg_model, tmp_path):
    with pytest.raises(SystemExit, match='checkpoint not found'):
        tool('export_onnx.py')([seg_model[0], str(tmp_path / 'none.pth'),
                                '--out', str(tmp_path / 'x.onnx')])
