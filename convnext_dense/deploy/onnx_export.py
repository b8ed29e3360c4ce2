"""Export a config's model (or its backbone, or backbone + neck) to ONNX.

What goes into the graph (``part``):

- ``'backbone'``: a normalised (N, 3, H, W) batch -> the backbone's maps
  (``feat0`` ...), dynamic batch, height and width;
- ``'neck'``: the same through backbone + neck (FPN: five maps; for
  Mask2Former the pixel decoder: the stride-4 mask features, then its three
  levels from stride 32 to 8);
- ``'model'``: the whole test path. Segmentation: raw BGR pixels (N, 3, H,
  W) -> ``logits`` (N, classes, H, W), whole image (sliding windows are run
  by the runtime, :class:`~convnext_dense.deploy.runtime.OnnxSegmentor`);
  UperNet and Mask2Former (semantic) heads. mmdet's Mask2Former (instance)
  is refused: only two-stage detectors export end to end.
  Detection (Mask R-CNN, Cascade Mask R-CNN): one resized BGR image (1, 3,
  H, W) and ``ori_hw`` -> ``boxes``, ``scores``, ``labels``, ``masks`` in
  original pixels, with RPN, RoI heads, NMS and mask pasting in the graph
  (:class:`~convnext_dense.deploy.graphs.DetectorGraph`). The resize of the
  test pipeline stays outside: it is OpenCV's, which ONNX ``Resize`` does
  not reproduce bit for bit.

The exporter is PyTorch's TorchScript-based one (``dynamo=False``): the
detection graph has sizes that depend on the data (boxes kept by NMS), which
the tracer records as ONNX ops as they come, and it exports about 4x faster
than ``torch.export`` here (1.9 s vs 7.6 s for the 'test' backbone). The
package's mmcv ops are Python calls into torchvision that no exporter can
see into; the graphs call ``torchvision.ops.roi_align`` (ONNX ``RoiAlign``)
and an NMS with its own ONNX symbolic (``NonMaxSuppression``) instead.

Class names, palette, task and part are stored in the file's metadata, so
the runtime paints without the checkpoint.
"""
from __future__ import annotations

import json
import warnings

import torch
import torch.nn as nn

from convnext_dense.fileio import atomic_path

from ..optional import require
from .graphs import (DetectorGraph, FeatureGraph, HalfGraph, SegmentorGraph,
                     UnsupportedModelError)

PARTS = ('model', 'backbone', 'neck')
# RoiAlign's half-pixel mode (mmcv's aligned=True) and GridSample need 16
MIN_OPSET = {'det': 16, 'seg': 11}
# the deformable attention of Mask2Former's pixel decoder: GridSample
MIN_OPSET_QUERY_HEAD = 16
DEFAULT_OPSET = 17
META_KEY = 'convnext_dense'
# LayerNormalization (statistics in float32 by its stash_type); below 17 the
# exporter decomposes LayerNorm into ReduceMean/Pow in the graph's dtype
MIN_OPSET_FP16 = 17


def _feature_graph(model: nn.Module, part: str) -> FeatureGraph:
    if part == 'backbone':
        return FeatureGraph(model.backbone)
    if getattr(model, 'neck', None) is not None:
        return FeatureGraph(model.backbone, model.neck)
    # Mask2Former: the pixel decoder is the neck (mask features + 3 levels)
    head = getattr(model, 'panoptic_head', getattr(model, 'decode_head',
                                                   None))
    if hasattr(head, 'pixel_decoder'):
        return FeatureGraph(model.backbone, head.pixel_decoder)
    raise UnsupportedModelError(
        f'{type(model).__name__} has no neck; export part '
        "'backbone' or 'model'")


def build_graph(model: nn.Module, task: str, part: str = 'model'
                ) -> nn.Module:
    """The module whose trace is the exported graph, in eval mode.

    Raises:
        UnsupportedModelError: If the model or one of its parts is not
            covered, naming it.
    """
    if part not in PARTS:
        raise ValueError(f'part must be one of {PARTS}; got {part!r}')
    if part != 'model':
        graph = _feature_graph(model, part)
    elif task == 'det':
        graph = DetectorGraph(model)
    else:
        graph = SegmentorGraph(model)
    return graph.eval()


def example_inputs(task: str, part: str, shape: tuple[int, int],
                   batch: int = 1) -> tuple[torch.Tensor, ...]:
    """Inputs to trace with: random pixels (or a normalised-looking batch
    for the feature graphs) of ``shape`` (H, W); for the detector also the
    original size (here: the same)."""
    height, width = shape
    gen = torch.Generator().manual_seed(0)
    if part != 'model':
        return (torch.randn(batch, 3, height, width, generator=gen), )
    image = torch.rand(batch if task == 'seg' else 1, 3, height, width,
                       generator=gen) * 255
    if task == 'seg':
        return (image, )
    return image, torch.tensor([height, width])


def _names(task: str, part: str, num_outputs: int, dynamic: bool):
    """Input and output names and dynamic axes of the graph."""
    if part != 'model':
        inputs = ['input']
        outputs = [f'feat{i}' for i in range(num_outputs)]
        axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
        axes.update({name: {0: 'batch', 2: f'{name}_h', 3: f'{name}_w'}
                     for name in outputs})
    elif task == 'seg':
        inputs, outputs = ['image'], ['logits']
        axes = {'image': {0: 'batch', 2: 'height', 3: 'width'},
                'logits': {0: 'batch', 2: 'height', 3: 'width'}}
    else:
        inputs = ['image', 'ori_hw']
        outputs = ['boxes', 'scores', 'labels', 'masks'][:num_outputs]
        axes = {'image': {2: 'height', 3: 'width'}}
        axes.update({name: {0: 'detections'} for name in outputs})
        if 'masks' in outputs:
            axes['masks'] = {0: 'detections', 1: 'ori_height',
                             2: 'ori_width'}
    if not dynamic:  # detections stay dynamic: NMS decides them
        axes = {k: v for k, v in axes.items() if k not in inputs and
                (task == 'det' and part == 'model')}
    return inputs, outputs, axes


def export_model(model: nn.Module,
                 task: str,
                 out: str,
                 part: str = 'model',
                 shape: tuple[int, int] = (224, 224),
                 opset: int = DEFAULT_OPSET,
                 dynamic: bool = True,
                 metadata: dict | None = None,
                 fp16: bool = False) -> str:
    """Export a built, loaded mmdet/mmseg model to ``out``.

    Args:
        model: The detector or segmentor (eval mode, CPU, fp32).
        task: 'det' or 'seg'.
        out: The .onnx file to write, whole or not at all (its folder is
            created).
        part: 'model', 'backbone' or 'neck' (backbone + neck). Defaults to
            'model'.
        shape: (H, W) traced with; the graph takes any size when
            ``dynamic``. Defaults to (224, 224).
        opset: ONNX opset. Defaults to 17.
        dynamic: Dynamic batch (not detection), height and width. Defaults
            to True.
        metadata: Extra JSON-able metadata (class names, palette).
        fp16: Compute in float16 between float32 inputs and outputs
            (:class:`~convnext_dense.deploy.graphs.HalfGraph`); GRN and
            LayerNorm statistics stay float32. 'backbone' and 'neck' only,
            opset >= 17. Defaults to False.

    Returns:
        ``out``.

    Raises:
        UnsupportedModelError: If a part of the model or the opset is not
            supported, naming it.
    """
    if part == 'model' and opset < MIN_OPSET[task]:
        raise UnsupportedModelError(
            f'opset {opset} is too old for this {task} model: it needs '
            f'{MIN_OPSET[task]} (RoiAlign half_pixel, GridSample)')
    if (part == 'model' and opset < MIN_OPSET_QUERY_HEAD
            and hasattr(getattr(model, 'decode_head', None),
                        'transformer_decoder')):
        raise UnsupportedModelError(
            f'opset {opset} is too old for a Mask2Former head: its '
            f'deformable attention samples with GridSample (opset '
            f'{MIN_OPSET_QUERY_HEAD})')
    if fp16 and part == 'model':
        raise UnsupportedModelError(
            "fp16 export covers part 'backbone' and 'neck'; the heads "
            '(RoIAlign, NMS, mask pasting, UperNet) have not been checked '
            'in float16')
    if fp16 and opset < MIN_OPSET_FP16:
        raise UnsupportedModelError(
            f'fp16 export needs opset >= {MIN_OPSET_FP16} '
            f'(LayerNormalization, statistics in float32); got {opset}')
    require('onnx', 'ONNX export')  # before the minutes of tracing
    graph = build_graph(model, task, part)
    if fp16:
        graph = HalfGraph(graph)
    inputs = example_inputs(task, part, shape)
    with torch.no_grad():
        num_outputs = len(graph(*inputs)) if part != 'model' or \
            task == 'det' else 1
    input_names, output_names, axes = _names(task, part, num_outputs,
                                             dynamic)
    meta = dict(task=task, part=part, opset=opset, dynamic=dynamic,
                traced_shape=list(shape),
                compute_dtype='float16' if fp16 else 'float32',
                **(metadata or {}))
    if task == 'seg' and part == 'model':  # the runtime's final resize
        meta['align_corners'] = bool(model.decode_head.align_corners)
    # graph and metadata go into a hidden file that replaces ``out`` only
    # when complete: an existing file stays intact if the export fails
    with atomic_path(out) as partial, warnings.catch_warnings():
        # the legacy-exporter notice and tracer warnings on shape tensors
        # (recorded as ops, which is what we want)
        warnings.simplefilter('ignore')
        torch.onnx.export(graph, inputs, partial, dynamo=False,
                          opset_version=opset, input_names=input_names,
                          output_names=output_names, dynamic_axes=axes,
                          do_constant_folding=True)
        _write_metadata(partial, meta)
    return out


def _write_metadata(path: str, meta: dict) -> None:
    onnx = require('onnx', 'ONNX export')

    proto = onnx.load(path)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    onnx.save(proto, path)


def read_metadata(path: str) -> dict:
    """The metadata :func:`export_model` stored in an .onnx file; empty if
    it has none (a file exported elsewhere)."""
    onnx = require('onnx', 'Reading an ONNX file')

    proto = onnx.load(path, load_external_data=False)
    for entry in proto.metadata_props:
        if entry.key == META_KEY:
            return json.loads(entry.value)
    return {}
