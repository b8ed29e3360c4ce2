"""Run exported graphs with onnxruntime or OpenVINO and return mmdet/mmseg
data samples.

:class:`OnnxDetector` and :class:`OnnxSegmentor` take an image as
:class:`~convnext_dense.apis.inference.Inferencer` does ((H, W, 3) BGR) and
return the same ``DetDataSample`` / ``SegDataSample``, so the same
visualizers paint them. What runs outside the graph, and why:

- the config's test pipeline (OpenCV resize): run here as mmdet/mmseg run
  it, because ONNX ``Resize`` does not reproduce OpenCV's bit for bit;
- segmentation: the sliding window of ``test_cfg.mode='slide'`` (crops
  through the whole-image graph, logits averaged where windows overlap, as
  mmseg's ``slide_inference``), then the bilinear resize of the logits to
  the original size and the argmax (mmseg's ``postprocess_result``).

Detection needs nothing after the graph: boxes, scores, labels and pasted
masks come out at the original size.

OpenVINO (``backend='openvino'``, the optional ``openvino`` package) reads
the same .onnx files; :class:`OpenVinoSession` gives its compiled model
onnxruntime's ``run`` interface, so everything above is shared. Its
precision is OpenVINO's inference precision hint: f32 for fp32, bf16 for
bf16 (which OpenVINO runs in f32 on a CPU without bf16 units; the log says
which ran). A graph with an operation OpenVINO cannot convert is refused,
naming the operation.
"""
from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from ..optional import require
from ..tasks import inference_pipeline
from .onnx_export import read_metadata


def make_session(path: str, threads: int | None = None,
                 optimization: str = 'all'):
    """An onnxruntime CPU session.

    Args:
        path: The .onnx file.
        threads: Intra-op threads; None: ``OMP_NUM_THREADS`` if set, else
            onnxruntime's default (one per physical core).
        optimization: Graph optimisation level: 'disable', 'basic',
            'extended' or 'all'. Defaults to 'all'.
    """
    ort = require('onnxruntime', 'ONNX inference')

    options = ort.SessionOptions()
    levels = {
        'disable': ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        'basic': ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        'extended': ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        'all': ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    options.graph_optimization_level = levels[optimization]
    if threads is None and os.environ.get('OMP_NUM_THREADS'):
        threads = int(os.environ['OMP_NUM_THREADS'])
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(path, options,
                                providers=['CPUExecutionProvider'])


class UnsupportedByBackendError(ValueError):
    """A graph that the chosen runtime cannot run (names what it lacks)."""


class _Output:
    def __init__(self, name: str) -> None:
        self.name = name


class OpenVinoSession:
    """An OpenVINO CPU model with onnxruntime's session interface.

    Args:
        path: The .onnx file.
        threads: Inference threads; None: ``OMP_NUM_THREADS`` if set, else
            OpenVINO's default.
        precision: 'fp32' or 'bf16' (OpenVINO's inference precision hint).
            Defaults to 'fp32'.

    Raises:
        UnsupportedByBackendError: If OpenVINO cannot convert an operation
            of the graph (each one named) or the precision is not one of
            those.
    """

    HINTS = {'fp32': 'f32', 'bf16': 'bf16'}

    def __init__(self, path: str, threads: int | None = None,
                 precision: str = 'fp32') -> None:
        import openvino as ov

        if precision not in self.HINTS:
            raise UnsupportedByBackendError(
                f'precision {precision}: the openvino backend runs '
                f'{" or ".join(self.HINTS)}')
        core = ov.Core()
        try:
            model = core.read_model(path)
        except RuntimeError as err:
            raise UnsupportedByBackendError(
                f'{path}: OpenVINO cannot convert it: ' +
                _unconverted(str(err))) from None
        # the graph's names, taken before compiling (which may rename ports)
        self.input_names = [port.get_any_name() for port in model.inputs]
        self.output_names = [port.get_any_name() for port in model.outputs]
        config = {'INFERENCE_PRECISION_HINT': self.HINTS[precision]}
        if threads is None and os.environ.get('OMP_NUM_THREADS'):
            threads = int(os.environ['OMP_NUM_THREADS'])
        if threads:
            config['INFERENCE_NUM_THREADS'] = threads
        self.compiled = core.compile_model(model, 'CPU', config)
        self.request = self.compiled.create_infer_request()
        # what OpenVINO runs: f32 where the CPU has no bf16 units
        ran = self.compiled.get_property('INFERENCE_PRECISION_HINT')
        self.precision = ran.to_string() if hasattr(ran, 'to_string') \
            else str(ran)  # 'f32' or 'bf16'
        from mmengine.logging import print_log
        print_log(f'OpenVINO runs {path} in {self.precision} (asked for '
                  f'{precision})', logger='current')

    def get_inputs(self) -> list[_Output]:
        return [_Output(name) for name in self.input_names]

    def get_outputs(self) -> list[_Output]:
        return [_Output(name) for name in self.output_names]

    def run(self, output_names, feeds: dict) -> list[np.ndarray]:
        """All outputs, in the graph's order, for ``{input name: array}``."""
        results = self.request.infer(
            [feeds[name] for name in self.input_names])
        return [np.array(results[port]) for port in self.compiled.outputs]


def _unconverted(message: str) -> str:
    """The operations OpenVINO's report names, else its message."""
    for line in message.splitlines():
        if 'No conversion rule found for operations' in line or \
                'Unsupported operations' in line:
            return line.strip(' -')
    return message.strip().splitlines()[-1]


def make_backend_session(path: str, backend: str = 'onnxruntime',
                         threads: int | None = None,
                         precision: str = 'fp32'):
    """An onnxruntime session or an :class:`OpenVinoSession`."""
    if backend == 'openvino':
        return OpenVinoSession(path, threads, precision)
    if precision != 'fp32':
        raise UnsupportedByBackendError(
            f'precision {precision}: the onnxruntime backend runs fp32 '
            'graphs only')
    return make_session(path, threads)


class _OnnxModel:
    task = ''

    def __init__(self, onnx_file: str, cfg, threads: int | None = None,
                 backend: str = 'onnxruntime', precision: str = 'fp32'
                 ) -> None:
        self.meta = read_metadata(onnx_file)
        if self.meta.get('part', 'model') != 'model' or \
                self.meta.get('task', self.task) != self.task:
            raise ValueError(
                f'{onnx_file} holds part {self.meta.get("part")!r} of a '
                f'{self.meta.get("task")!r} model; painting needs a whole '
                f'{self.task} model (export_onnx.py without --part)')
        self.session = make_backend_session(onnx_file, backend, threads,
                                            precision)
        self.cfg = cfg
        self.pipeline = inference_pipeline(cfg, self.task)
        self.dataset_meta = dict(
            classes=tuple(self.meta.get('classes', ())),
            palette=[tuple(c) for c in self.meta.get('palette', ())])

    def _prepare(self, image: np.ndarray):
        data = self.pipeline(dict(img=image))
        pixels = data['inputs'].to(torch.float32)[None]  # (1, 3, H, W) BGR
        return pixels, data['data_samples']


class OnnxDetector(_OnnxModel):
    """A detector graph of :class:`~.graphs.DetectorGraph` on one image."""

    task = 'det'

    def predict(self, image: np.ndarray):
        """(H, W, 3) BGR image -> ``DetDataSample`` with ``pred_instances``
        at the image's size."""
        from mmengine.structures import InstanceData

        pixels, sample = self._prepare(image)
        ori_h, ori_w = sample.metainfo['ori_shape'][:2]
        outputs = self.session.run(None, {
            'image': pixels.numpy(),
            'ori_hw': np.array([ori_h, ori_w], dtype=np.int64)
        })
        names = [o.name for o in self.session.get_outputs()]
        found = dict(zip(names, (torch.from_numpy(o) for o in outputs)))
        instances = InstanceData(bboxes=found['boxes'],
                                 scores=found['scores'],
                                 labels=found['labels'])
        if 'masks' in found:
            instances.masks = found['masks'].bool()
        sample.pred_instances = instances
        return sample


class OnnxSegmentor(_OnnxModel):
    """A segmentor graph of :class:`~.graphs.SegmentorGraph`; whole image
    or sliding window, as the config's ``model.test_cfg`` says."""

    task = 'seg'

    def __init__(self, onnx_file: str, cfg, threads: int | None = None,
                 **kwargs) -> None:
        super().__init__(onnx_file, cfg, threads, **kwargs)
        self.test_cfg = dict(cfg.model.get('test_cfg') or {})
        self.align_corners = bool(self.meta.get('align_corners', False))

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """(1, 3, H, W) BGR pixels -> (1, classes, H, W) logits."""
        if self.test_cfg.get('mode', 'whole') != 'slide':
            return self._run(pixels)
        return self._slide(pixels)

    def _run(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(
            None, {'image': pixels.contiguous().numpy()})[0])

    def _slide(self, pixels: torch.Tensor) -> torch.Tensor:
        """mmseg's ``slide_inference``: overlapping crops, averaged."""
        h_stride, w_stride = self.test_cfg['stride']
        h_crop, w_crop = self.test_cfg['crop_size']
        _, _, h_img, w_img = pixels.shape
        h_grids = max(h_img - h_crop + h_stride - 1, 0) // h_stride + 1
        w_grids = max(w_img - w_crop + w_stride - 1, 0) // w_stride + 1
        preds, count = None, pixels.new_zeros((1, 1, h_img, w_img))
        for h_idx in range(h_grids):
            for w_idx in range(w_grids):
                y2 = min(h_idx * h_stride + h_crop, h_img)
                x2 = min(w_idx * w_stride + w_crop, w_img)
                y1, x1 = max(y2 - h_crop, 0), max(x2 - w_crop, 0)
                crop = self._run(pixels[:, :, y1:y2, x1:x2])
                if preds is None:
                    preds = pixels.new_zeros((1, crop.shape[1], h_img,
                                              w_img))
                preds[:, :, y1:y2, x1:x2] += crop
                count[:, :, y1:y2, x1:x2] += 1
        return preds / count

    def predict(self, image: np.ndarray):
        """(H, W, 3) BGR image -> ``SegDataSample`` with ``seg_logits`` and
        ``pred_sem_seg`` at the image's size."""
        from mmengine.structures import PixelData

        pixels, sample = self._prepare(image)
        logits = self.logits(pixels)
        # mmseg's postprocess_result: logits to the original size, argmax
        logits = F.interpolate(logits, size=sample.metainfo['ori_shape'][:2],
                               mode='bilinear',
                               align_corners=self.align_corners)[0]
        sample.set_data(dict(
            seg_logits=PixelData(data=logits),
            pred_sem_seg=PixelData(data=logits.argmax(dim=0, keepdim=True))))
        return sample


def load_onnx_model(onnx_file: str, cfg, task: str,
                    threads: int | None = None,
                    backend: str = 'onnxruntime', precision: str = 'fp32'):
    """An :class:`OnnxDetector` or :class:`OnnxSegmentor` for ``task``, run
    by ``backend`` ('onnxruntime' or 'openvino') in ``precision``."""
    cls = OnnxDetector if task == 'det' else OnnxSegmentor
    return cls(onnx_file, cfg, threads, backend=backend, precision=precision)
