"""CPU inference benchmark: PyTorch eager vs channels-last / compiled /
bf16 autocast vs onnxruntime and OpenVINO, on the same weights and inputs.

Cases (``CASES``): the ConvNeXt-T backbone at 224 (batch 1 and 8),
UperNet-T whole image at 512x512, Cascade Mask R-CNN T end to end (mmdet's
``predict`` against the exported graph) at a small size. Each contender is
timed in alternating rounds (:func:`~convnext_dense.analysis.timing.
interleaved_rounds`) so that load from other processes hits all alike;
each round gives a ratio to eager, and the table reports the median and
the range over rounds.
Before timing, every contender's output is compared with eager's (max abs
difference; detections: count and max box difference). The achieved
GFLOP/s (``torch.utils.flop_counter`` on the eager forward) is set against
the machine's fp32 matmul rate measured in the same run.

The precision axis (``precisions``): with 'bf16', eager PyTorch under
``torch.autocast`` (channels-last) joins; with 'openvino', OpenVINO in fp32
and, with 'bf16' too, with its bf16 hint. The training cases
(``TRAIN_CASES``) time one training iteration in fp32 against bf16
autocast (:class:`~convnext_dense.engine.autocast.AutocastOptimWrapper`).
On a CPU without AMX or AVX512-BF16 the bf16 rows measure torch's and
OpenVINO's emulation (OpenVINO falls back to f32).
"""
from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import tempfile
import time
from typing import Callable

import numpy as np
import torch
import torch.nn as nn

from convnext_dense.optional import require
from convnext_dense.paths import CONFIG_DIR

from .timing import interleaved_rounds, wall_clock_per_call


@dataclasses.dataclass
class Row:
    case: str
    contender: str
    ms_per_image: float
    ratios: list[float]
    max_diff: float
    gflops: float  # per image, of the eager forward


def matmul_gflops(threads: int, size: int = 1024, seconds: float = 1.0
                  ) -> float:
    """fp32 GFLOP/s of ``torch.mm`` on two size x size matrices."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b)
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start) / 1e9


def count_gflops(fn: Callable[[], object]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 1e9


def _max_diff(a, b) -> float:
    if isinstance(a, (tuple, list)):
        return max(_max_diff(x, y) for x, y in zip(a, b))
    a = a.detach().float().numpy() if isinstance(a, torch.Tensor) else a
    b = b.detach().float().numpy() if isinstance(b, torch.Tensor) else b
    return float(np.abs(np.asarray(a, np.float32) -
                        np.asarray(b, np.float32)).max())


def has_openvino() -> bool:
    import importlib.util
    return importlib.util.find_spec('openvino') is not None


def openvino_contenders(path: str, threads: int, precisions, feeds: dict
                        ) -> dict:
    """``openvino fp32`` / ``openvino bf16`` callables on ``path`` (none
    without the package or without 'openvino' in ``precisions``); the label
    says what OpenVINO ran."""
    from convnext_dense.deploy.runtime import OpenVinoSession
    if 'openvino' not in precisions or not has_openvino():
        return {}
    contenders = {}
    for precision in ('fp32', 'bf16'):
        if precision in precisions:
            session = OpenVinoSession(path, threads, precision)
            label = f'openvino {precision}' + (
                ' (ran f32)' if precision == 'bf16' and
                session.precision == 'f32' else '')
            contenders[label] = (lambda s=session: s.run(None, feeds))
    return contenders


def _autocast(fn: Callable[[], object]) -> Callable[[], object]:
    def run():
        with torch.autocast('cpu', dtype=torch.bfloat16):
            return fn()
    return run


def tensor_contenders(model: nn.Module, graph: nn.Module, x: torch.Tensor,
                      task: str, part: str, threads: int, compile: bool,
                      workdir: str, precisions=('fp32', )
                      ) -> tuple[dict, dict]:
    """Callables of one tensor-in, tensors-out graph (of ``model``), and
    their outputs."""
    import copy

    from convnext_dense.deploy.onnx_export import export_model
    from convnext_dense.deploy.runtime import make_session

    path = export_model(model, task,
                        os.path.join(workdir, f'{task}_{part}.onnx'),
                        part=part, shape=tuple(x.shape[2:]))
    session = make_session(path, threads)
    name = session.get_inputs()[0].name
    x_np = x.numpy()
    x_cl = x.contiguous(memory_format=torch.channels_last)
    graph_cl = copy.deepcopy(graph).to(memory_format=torch.channels_last)
    contenders = {
        'eager': lambda: graph(x),
        'channels-last': lambda: graph_cl(x_cl),
        'onnxruntime': lambda: session.run(None, {name: x_np}),
    }
    if compile:
        compiled = torch.compile(graph_cl)
        contenders['compiled (channels-last)'] = lambda: compiled(x_cl)
    if 'bf16' in precisions:
        contenders['bf16 autocast (channels-last)'] = _autocast(
            lambda: graph_cl(x_cl))
    contenders.update(openvino_contenders(path, threads, precisions,
                                          {name: x_np}))
    with torch.inference_mode():
        outputs = {k: fn() for k, fn in contenders.items()}
    return contenders, outputs


def build_case(name: str, quick: bool):
    """(model, graph, input, task, part) of a tensor case, random
    weights."""
    from mmengine.config import Config

    from convnext_dense.deploy.graphs import FeatureGraph, SegmentorGraph
    from convnext_dense.tasks import build_model

    torch.manual_seed(0)
    if name.startswith('backbone'):
        from convnext_dense.models.convnext import ConvNeXt
        batch = int(name.split('batch')[-1])
        backbone = ConvNeXt(arch='test' if quick else 'tiny').eval()
        backbone.init_weights()
        owner = nn.Module()  # what export_model takes: a model.backbone
        owner.backbone = backbone
        size = 64 if quick else 224
        return owner, FeatureGraph(backbone).eval(), \
            torch.randn(batch, 3, size, size), 'det', 'backbone'
    cfg = Config.fromfile(os.path.join(CONFIG_DIR,
                                       'upernet_convnext_t.py'))
    cfg.model.backbone.init_cfg = None
    if quick:
        cfg.model.backbone.arch = 'test'
        cfg.model.decode_head.in_channels = [16, 32, 64, 128]
        cfg.model.decode_head.channels = 32
        cfg.model.auxiliary_head.in_channels = 64
    model = build_model(cfg)
    model.init_weights()
    size = 128 if quick else 512
    return model, SegmentorGraph(model).eval(), \
        torch.rand(1, 3, size, size) * 255, 'seg', 'model'


def run_tensor_case(name: str, quick: bool, threads: int, rounds: int,
                    compile: bool, workdir: str, precisions=('fp32', )
                    ) -> list[Row]:
    model, graph, x, task, part = build_case(name, quick)
    contenders, outputs = tensor_contenders(model, graph, x, task, part,
                                            threads, compile, workdir,
                                            precisions)
    with torch.inference_mode():
        gflops = count_gflops(lambda: graph(x)) / x.shape[0]
        iters = 1 if not quick and x.shape[-1] >= 512 else 3
        times = interleaved_rounds(contenders, rounds,
                                   measure=wall_clock_per_call(iters))
    return _rows(name, times, outputs, x.shape[0], gflops)


def _rows(case, times, outputs, batch, gflops) -> list[Row]:
    rows = []
    for contender, secs in times.items():
        ratios = [e / t for e, t in zip(times['eager'], secs)]
        diff = 0.0 if contender == 'eager' else \
            _max_diff(outputs['eager'], outputs[contender])
        rows.append(Row(case, contender,
                        1e3 * statistics.median(secs) / batch, ratios, diff,
                        gflops))
    return rows


def run_cascade_case(quick: bool, threads: int, rounds: int,
                     workdir: str, precisions=('fp32', )) -> list[Row]:
    """Cascade Mask R-CNN T: mmdet's predict vs the exported graph."""
    from mmdet.structures import DetDataSample
    from mmengine.config import Config

    from convnext_dense.deploy.onnx_export import export_model
    from convnext_dense.deploy.runtime import make_session
    from convnext_dense.tasks import build_model

    cfg = Config.fromfile(os.path.join(CONFIG_DIR,
                                       'cascade_convnext_t.py'))
    cfg.model.backbone.init_cfg = None
    # random weights score every class near 1/81, under the 0.05 threshold:
    # keep the full 100 detections so masks are computed and pasted
    cfg.model.test_cfg.rcnn.score_thr = 0.0
    if quick:
        cfg.model.backbone.arch = 'test'
        cfg.model.neck.in_channels = [16, 32, 64, 128]
        cfg.model.test_cfg.rpn.max_per_img = 50  # RoI heads dominate
    torch.manual_seed(0)
    model = build_model(cfg)
    model.init_weights()
    size = 128 if quick else 320
    path = export_model(model, 'det', os.path.join(workdir, 'cascade.onnx'),
                        shape=(size, size))
    session = make_session(path, threads)
    pixels = torch.rand(1, 3, size, size) * 255
    sample = DetDataSample(metainfo=dict(
        img_shape=(size, size), ori_shape=(size, size),
        scale_factor=(1.0, 1.0)))
    feeds = dict(image=pixels.numpy(),
                 ori_hw=np.array([size, size], dtype=np.int64))

    def eager():
        data = model.data_preprocessor(
            dict(inputs=[pixels[0]], data_samples=[sample]), False)
        return model.predict(data['inputs'], data['data_samples'])[0] \
            .pred_instances

    contenders = {'eager': eager,
                  'onnxruntime': lambda: session.run(None, feeds)}
    if 'bf16' in precisions:
        contenders['bf16 autocast'] = _autocast(eager)
    contenders.update(openvino_contenders(path, threads, precisions, feeds))

    def boxes(out) -> np.ndarray:
        if isinstance(out, (list, tuple)):  # a graph's outputs
            return np.asarray(out[0], np.float32)
        return out.bboxes.float().numpy()

    with torch.inference_mode():
        ref = boxes(eager())
        diffs = {}
        for name, fn in contenders.items():
            got = boxes(fn())
            # sorted by score; near-equal scores may swap, so compare the
            # sets of boxes through their sorted coordinates
            diffs[name] = _max_diff(np.sort(ref, axis=0),
                                    np.sort(got, axis=0)) \
                if len(ref) == len(got) > 0 else float('inf')
        gflops = count_gflops(eager)
        times = interleaved_rounds(contenders, rounds)
    rows = _rows('cascade-T end to end', times,
                 {name: 0 for name in contenders}, 1, gflops)
    for row in rows:
        row.max_diff = diffs[row.contender]
    return rows


def format_table(rows: list[Row], peak: float, threads: int) -> str:
    lines = [
        f'matmul peak (fp32 torch.mm 1024^3, {threads} thread(s)): '
        f'{peak:.1f} GFLOP/s', '',
        '| case | contender | ms / image | images/s | x eager, median '
        '(range over rounds) | max abs diff to eager | GFLOP/s '
        '(% of matmul peak) |', '|---|---|---|---|---|---|---|']
    for r in rows:
        achieved = r.gflops / (r.ms_per_image / 1e3)
        if r.gflops != r.gflops:  # nan: not counted (training rows)
            achieved = float('nan')
        lines.append(
            f'| {r.case} | {r.contender} | {r.ms_per_image:.1f} | '
            f'{1e3 / r.ms_per_image:.2f} | {statistics.median(r.ratios):.2f}'
            f' ({min(r.ratios):.2f}-{max(r.ratios):.2f}) | '
            f'{r.max_diff:.1e} | {achieved:.1f} ({100 * achieved / peak:.0f}'
            '%) |')
    return '\n'.join(lines)


CASES = ('backbone-batch1', 'backbone-batch8', 'upernet', 'cascade')
TRAIN_CASES = ('train-upernet', 'train-cascade')


def run(cases=CASES, quick: bool = False, threads: int = 1,
        rounds: int = 5, compile: bool = False, precisions=('fp32', )
        ) -> tuple[list[Row], float]:
    """Run the cases; returns the rows and the matmul peak.

    ``precisions`` ('fp32', 'bf16'): see the module docstring; the training
    cases time fp32 against bf16 whatever it says."""
    torch.set_num_threads(threads)
    peak = matmul_gflops(threads)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for case in cases:
            if case == 'cascade':
                rows += run_cascade_case(quick, threads, rounds, workdir,
                                         precisions)
            elif case in TRAIN_CASES:
                from .bench_train import time_training_case
                times, loss_diff = time_training_case(case, quick, rounds)
                train_rows = _rows(f'{case} iteration', times,
                                   {k: 0 for k in times}, 1, float('nan'))
                train_rows[1].max_diff = loss_diff
                rows += train_rows
            else:
                rows += run_tensor_case(case, quick, threads, rounds,
                                        compile, workdir, precisions)
    return rows, peak


def benchmark_inference(cases=CASES, quick: bool = False, threads: int = 1,
                        rounds: int = 5, compile: bool = False,
                        out: str | None = None, command: str = '',
                        precisions=('fp32', )) -> str:
    """Run the cases and return the markdown page (written to ``out`` if
    given); what ``tools/analysis/bench_inference.py`` does. The page
    records the CPU's bf16 units: without them bf16 rows time emulation."""
    from convnext_dense.engine.precision import cpu_precision_flags
    onnxruntime = require('onnxruntime', 'The inference benchmark')
    start = time.time()
    rows, peak = run(cases, quick=quick, threads=threads, rounds=rounds,
                     compile=compile, precisions=precisions)
    flags = ', '.join(f'{k}={"yes" if v else "no"}'
                      for k, v in cpu_precision_flags().items())
    onednn = next((line.split('v', 1)[1].split()[0]
                   for line in torch.__config__.show().splitlines()
                   if 'MKL-DNN' in line or 'oneDNN' in line), 'unknown')
    page = '\n'.join([
        '# CPU inference benchmark', '',
        f'`{command.strip()}`: {time.time() - start:.0f} s; '
        f'{"quick (tiny models)" if quick else "real sizes"}, '
        f'{threads} thread(s), {rounds} alternating rounds; '
        f'torch {torch.__version__} (oneDNN {onednn}), onnxruntime '
        f'{onnxruntime.__version__}, {_openvino_version()}, '
        f'{platform.processor() or platform.machine()}, '
        f'{os.cpu_count()} cores (shared); CPU units: {flags} (bf16 rows '
        'without them measure emulation). Random weights: the timing does '
        'not depend on them.', '',
        format_table(rows, peak, threads), ''])
    if out:
        with open(out, 'w', encoding='utf-8') as f:
            f.write(page)
    return page


def _openvino_version() -> str:
    if not has_openvino():
        return 'no OpenVINO'
    import openvino
    return f'OpenVINO {openvino.__version__.split("-")[0]}'
