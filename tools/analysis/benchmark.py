"""Benchmark ConvNeXt-T and Cascade Mask R-CNN T against their references.

    python tools/analysis/benchmark.py [--quick] [--device auto|cpu|cuda]
        [--threads N] [--repeats N] [--out docs/benchmarks.md]

In one run, on the CPU and on the GPU when one is present, it measures:

1. Backbone throughput (images/s), forward and forward+backward, of
   convnext_dense's ConvNeXt-T against timm's ``convnext_tiny``
   (``features_only``) and mmpretrain's ``ConvNeXt`` (arch 'tiny', the four
   stage outputs, ``gap_before_final_norm=False``), in NCHW and channels-last,
   fp32 and autocast (bfloat16 on the CPU; float16 and bfloat16 on the GPU).
2. The backbone's peak training memory with and without ``with_cp`` (GPU:
   ``torch.cuda.max_memory_allocated``; CPU: in a fresh subprocess, the
   resident-size high-water mark (VmHWM, reset before the step) over the
   resident size before the step).
3. One training iteration of Cascade Mask R-CNN T: our config
   (configs/cascade_convnext_t.py) against mmdet's own ConvNeXt config
   (mmpretrain's backbone), both with the same random weights and batch, and
   ours again under :class:`convnext_dense.engine.channels_last.ChannelsLastHook`.
4. Only with ``--parts ... compiled``: forward throughput of ours and timm
   under ``torch.compile`` (channels-last; bf16 on the GPU), against ours
   eager.

Contenders are timed in alternation (the order rotates every round), after
warm-up rounds, and the median of the timed rounds is reported, so a load
change on a shared machine hits every contender alike. The markdown table
(machine, versions, the exact command, absolute numbers and ratios) is
written to ``--out``. mmpretrain is an optional extra:
``pip install -r requirements/benchmark.txt``.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import os
import os.path as osp
import platform
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn as nn

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
OURS_DET_CONFIG = osp.join(REPO_ROOT, 'configs', 'cascade_convnext_t.py')
MMDET_DET_CONFIG = ('convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc'
                    '-giou_amp-ms-crop-3x_coco.py')
BACKBONES = ('ours', 'timm', 'mmpretrain')
# 'test' is the tiny arch of the unit tests (smoke runs); depths and dims
# are given explicitly to timm and mmpretrain for it
ARCHS = {
    'tiny': dict(depths=(3, 3, 9, 3), dims=(96, 192, 384, 768)),
    'test': dict(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128)),
}
DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
LAYOUTS = {'NCHW': torch.contiguous_format,
           'channels-last': torch.channels_last}
PASSES = ('forward', 'forward+backward')


# -- settings -----------------------------------------------------------------
def parse_size(text: str) -> tuple[int, int, int]:
    """'2x800x1216' -> (batch, height, width)."""
    try:
        batch, height, width = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f'sizes are BATCHxHEIGHTxWIDTH, e.g. 32x224x224; got {text!r}')
    return batch, height, width


def fmt_size(size: tuple[int, int, int]) -> str:
    return f'{size[0]}x{size[1]}x{size[2]}'


@dataclass
class DeviceSettings:
    """What to measure on one device."""
    device: torch.device
    sizes: list[tuple[int, int, int]]
    amp_sizes: list[tuple[int, int, int]]
    dtypes: list[str]  # in the order they are measured
    compiled_sizes: list[tuple[int, int, int]]
    mem_size: tuple[int, int, int]
    det_size: tuple[int, int, int]
    det_rois: int | None  # RoIs sampled per image and stage; None: config's
    warmup: int
    repeats: int
    inner: int  # calls per timing, so a GPU timing spans milliseconds


def device_settings(args: argparse.Namespace,
                    device: torch.device) -> DeviceSettings:
    """Full sizes are those of the task; --quick sizes finish in minutes on 2
    CPU cores. bf16 autocast on a CPU without native bf16 instructions runs
    about 10x slower than fp32 (measured: 8.1 s vs 0.7 s for a 2x224x224
    forward on the development machine's EPYC), so --quick times it on a
    smaller input."""
    cuda = device.type == 'cuda'
    if args.quick:
        sizes = [(2, 224, 224), (1, 320, 480)]
        amp_sizes = [(1, 128, 128)]
        # the memory step runs once per variant, so it keeps the detection
        # size: at 2x320x320 the weight gradients (112 MB) and one block's
        # recomputation are a large part of the with_cp peak (measured 553
        # vs 398 MiB, -28%)
        mem_size, det_size = (2, 800, 1216), (2, 320, 320)
        # the cascade's RoI heads (4 convs per box head and 4 per mask head,
        # on 512 RoIs per image in each of 3 stages) dominate a CPU
        # iteration: measured with the 'test' arch on 2x64x64, 1 thread,
        # about 100 s with 512 RoIs and 20 s with 64, 80% of it in
        # convolutions. Fewer RoIs let the backbone's share show.
        det_rois = 32
    else:
        sizes = [(32, 224, 224), (2, 800, 1216)]
        amp_sizes = sizes
        mem_size = (2, 800, 1216)
        # mmdet's test scale is 1333x800; 320x320 keeps a CPU run in minutes
        det_size = (2, 800, 1333) if cuda else (2, 320, 320)
        det_rois = None
    sizes = args.sizes or sizes
    return DeviceSettings(
        device=device,
        sizes=sizes,
        amp_sizes=args.amp_sizes or args.sizes or amp_sizes,
        dtypes=args.dtypes or (['fp32', 'fp16', 'bf16'] if cuda
                               else ['fp32', 'bf16']),
        compiled_sizes=args.compiled_sizes or [
            size for size in sizes if size[1:] == (224, 224)] or sizes[:1],
        mem_size=args.mem_size or mem_size,
        det_size=args.det_size or det_size,
        det_rois=args.det_rois or det_rois,
        warmup=args.warmup if args.warmup is not None else (3 if cuda else 1),
        repeats=args.repeats,
        inner=args.inner if args.inner is not None else (10 if cuda else 1))


# -- timing -------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def clock(device: torch.device) -> tuple[Callable[[], float], str]:
    """The timer for a device, and its name for the page.

    On the CPU with one torch thread, the process's CPU time: the seconds
    one core spends, which other jobs on a shared machine do not stretch
    (measured here under a load average of 2-6 on 2 cores: wall-clock
    timings of one step spread by up to 150%, CPU times by about 15%).
    Otherwise the wall clock, after synchronising the GPU.
    """
    if device.type == 'cpu' and torch.get_num_threads() == 1:
        return time.process_time, 'process CPU time (1 torch thread)'
    return time.perf_counter, 'wall clock'


def interleaved_times(steps: dict[str, Callable[[], None]],
                      settings: DeviceSettings) -> dict[str, list[float]]:
    """Seconds per call of each step: warm-up rounds, then timed rounds.

    Every round runs each contender once, in an order that rotates from
    round to round, so no contender always follows the same other one.
    """
    timer, _ = clock(settings.device)
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(settings.warmup + settings.repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            synchronize(settings.device)
            start = timer()
            for _ in range(settings.inner):
                steps[name]()
            synchronize(settings.device)
            if round_ >= settings.warmup:
                times[name].append((timer() - start) / settings.inner)
    return times


def spread(values: list[float]) -> float:
    """(max - min) / median: how much the timed rounds disagree."""
    return (max(values) - min(values)) / statistics.median(values)


# -- backbones ----------------------------------------------------------------
def build_backbone(name: str, arch: str, with_cp: bool = False) -> nn.Module:
    """One of the three ConvNeXt implementations, randomly initialised."""
    depths, dims = ARCHS[arch]['depths'], ARCHS[arch]['dims']
    if name == 'ours':
        from convnext_dense.models.convnext import ConvNeXt
        return ConvNeXt(arch, with_cp=with_cp)
    if name == 'timm':
        import timm
        kwargs = {} if arch == 'tiny' else dict(depths=depths, dims=dims)
        return timm.create_model(
            'convnext_tiny', pretrained=False, features_only=True, **kwargs)
    if name == 'mmpretrain':
        # mmpretrain 1.2.0 imports its BLIP models whenever transformers is
        # installed, and they fail to import under transformers 5 ("NoneType
        # takes no arguments"); the backbone needs none of them
        import mmpretrain.utils.dependency
        mmpretrain.utils.dependency.WITH_MULTIMODAL = False
        from mmpretrain.models.backbones import ConvNeXt as MMPretrainConvNeXt
        mm_arch = 'tiny' if arch == 'tiny' else dict(
            depths=list(depths), channels=list(dims))
        return MMPretrainConvNeXt(
            arch=mm_arch, out_indices=(0, 1, 2, 3),
            gap_before_final_norm=False, with_cp=with_cp)
    raise ValueError(f'unknown backbone {name!r}')


def backbone_step(model: nn.Module, x: torch.Tensor, train: bool,
                  amp_dtype: torch.dtype | None) -> Callable[[], None]:
    """A closure running one forward (no grad) or forward+backward."""
    device_type = x.device.type

    def autocast():
        if amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type, dtype=amp_dtype)

    if train:
        def step() -> None:
            with autocast():
                outs = model(x)
            # every output feeds the loss, as every level feeds a detector
            loss = sum(out.float().mean() for out in outs)
            loss.backward()
            model.zero_grad(set_to_none=True)
    else:
        def step() -> None:
            with torch.no_grad(), autocast():
                model(x)
    return step


@dataclass
class ThroughputRow:
    device: str
    size: tuple[int, int, int]
    dtype: str
    layout: str
    pass_: str
    images_per_s: dict[str, float]
    spread: float
    # per other contender, the lowest and highest ratio of one round: the
    # contenders of a round run back to back, so a round's ratio is free of
    # the machine's slower drifts, and the range is the ratio's noise
    round_ratios: dict[str, tuple[float, float]]

    def ratio(self, other: str) -> float | None:
        if other not in self.images_per_s:
            return None
        return self.images_per_s['ours'] / self.images_per_s[other]


def round_ratio_range(times: dict[str, list[float]], other: str,
                      ours: str = 'ours') -> tuple[float, float]:
    """(lowest, highest) over the timed rounds of ours/other in images/s."""
    ratios = [t_other / t_ours
              for t_ours, t_other in zip(times[ours], times[other])]
    return min(ratios), max(ratios)


def timed_row(steps: dict[str, Callable[[], None]],
              settings: DeviceSettings, size: tuple[int, int, int],
              dtype: str, layout: str, pass_: str,
              log: Callable[[str], None], label: str = '') -> ThroughputRow:
    """Time the contenders of one table row in alternation, log and return
    the row (the first contender is the one the ratios divide)."""
    times = interleaved_times(steps, settings)
    first = next(iter(times))
    row = ThroughputRow(
        device=settings.device.type, size=size, dtype=dtype, layout=layout,
        pass_=pass_,
        images_per_s={name: size[0] / statistics.median(t)
                      for name, t in times.items()},
        spread=max(spread(t) for t in times.values()),
        round_ratios={name: round_ratio_range(times, name, first)
                      for name in times if name != first})
    log(f'{row.device} {fmt_size(size)} {dtype} {layout} {pass_}{label}: '
        + ', '.join(f'{n} {v:.2f} img/s'
                    for n, v in row.images_per_s.items()))
    return row


def measure_throughput(settings: DeviceSettings, arch: str,
                       contenders: list[str], log: Callable[[str], None],
                       on_row: Callable[[ThroughputRow], None] = lambda r: None
                       ) -> list[ThroughputRow]:
    device = settings.device
    torch.manual_seed(0)
    models = {name: build_backbone(name, arch).to(device)
              for name in contenders}
    rows = []
    cells = [(size, dtype) for dtype in settings.dtypes
             for size in (settings.sizes if dtype == 'fp32'
                          else settings.amp_sizes)]
    for size, dtype in cells:
        x = torch.randn(size[0], 3, size[1], size[2], device=device)
        for layout, memory_format in LAYOUTS.items():
            xm = x.contiguous(memory_format=memory_format)
            for model in models.values():
                model.to(memory_format=memory_format)
            for pass_ in PASSES:
                train = pass_ == 'forward+backward'
                steps = {}
                for name, model in models.items():
                    model.train(train)  # mmpretrain's train() returns None
                    steps[name] = backbone_step(model, xm, train,
                                                DTYPES[dtype])
                row = timed_row(steps, settings, size, dtype, layout, pass_,
                                log)
                rows.append(row)
                on_row(row)
    return rows


def measure_compiled(settings: DeviceSettings, arch: str, backend: str,
                     log: Callable[[str], None],
                     on_row: Callable[[ThroughputRow], None] = lambda r: None
                     ) -> list[ThroughputRow]:
    """Forward throughput of ours and timm compiled, against ours eager.

    Channels-last, in bf16 autocast on a GPU (fp32 on a CPU, where bf16 has
    no hardware here). Ours through ``compile_backbone`` (the
    ChannelsLastHook's ``compile=True``); timm through ``torch.compile`` with
    the same ``dynamic=True``, so each compiles once for all batch sizes.
    The first (warm-up) call of each compiles, and is not timed.
    """
    from convnext_dense.engine.channels_last import compile_backbone

    device = settings.device
    dtype = 'bf16' if device.type == 'cuda' else 'fp32'
    torch.manual_seed(0)
    models = {}
    for name in ('ours', 'ours, compiled', 'timm, compiled'):
        model = build_backbone(name.split(',')[0], arch).to(device).eval()
        model = model.to(memory_format=torch.channels_last)
        if name == 'ours, compiled':
            compile_backbone(model, backend=backend)
        elif name == 'timm, compiled':
            model = torch.compile(model, dynamic=True, backend=backend)
        models[name] = model
    rows = []
    for size in settings.compiled_sizes:
        x = torch.randn(size[0], 3, size[1], size[2], device=device)
        x = x.contiguous(memory_format=torch.channels_last)
        steps = {name: backbone_step(model, x, False, DTYPES[dtype])
                 for name, model in models.items()}
        row = timed_row(
            steps, replace(settings, warmup=max(settings.warmup, 1)), size,
            dtype, 'channels-last', 'forward', log, label=f', {backend}')
        rows.append(row)
        on_row(row)
    return rows


# -- memory -------------------------------------------------------------------
def _status_bytes(field: str) -> int:
    """A size from /proc/self/status (VmRSS, VmHWM), in bytes."""
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) * 1024  # the file says kB
    raise KeyError(field)


def memory_child(spec: dict) -> dict:
    """Peak memory of one backbone training step, in this fresh process.

    The peak is the kernel's resident-size high-water mark, VmHWM, which
    writing 5 to /proc/self/clear_refs resets to the current size just
    before the step. (``getrusage``'s ``ru_maxrss`` cannot be used: Linux
    carries it across ``execve``, so a child starts with its parent's
    high-water mark.)
    """
    torch.set_num_threads(spec['threads'])
    torch.manual_seed(0)
    model = build_backbone('ours', spec['arch'], with_cp=spec['with_cp'])
    model.train()
    batch, height, width = spec['size']
    x = torch.randn(batch, 3, height, width)
    step = backbone_step(model, x, train=True, amp_dtype=None)
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
    except OSError:
        pass  # then VmHWM also holds the model-building peak
    before = _status_bytes('VmRSS')
    hwm_before = _status_bytes('VmHWM')
    step()
    peak = _status_bytes('VmHWM')
    return dict(peak_bytes=peak - before,
                masked_by_earlier_peak=hwm_before >= peak)


def measure_memory(settings: DeviceSettings, arch: str, threads: int,
                   log: Callable[[str], None]) -> dict:
    """Peak extra memory of a forward+backward, without and with with_cp."""
    batch, height, width = settings.mem_size
    result = dict(device=settings.device.type, size=settings.mem_size)
    for with_cp in (False, True):
        key = 'with_cp' if with_cp else 'plain'
        if settings.device.type == 'cuda':
            torch.manual_seed(0)
            model = build_backbone('ours', arch, with_cp=with_cp)
            model.to(settings.device).train()
            x = torch.randn(batch, 3, height, width, device=settings.device)
            step = backbone_step(model, x, train=True, amp_dtype=None)
            step()  # the first step allocates the gradients once
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            step()
            torch.cuda.synchronize()
            result[key] = torch.cuda.max_memory_allocated() - base
            del model, x, step
            torch.cuda.empty_cache()
        else:
            spec = dict(arch=arch, with_cp=with_cp, size=settings.mem_size,
                        threads=threads)
            out = subprocess.run(
                [sys.executable, osp.abspath(__file__), '--memory-child',
                 json.dumps(spec)],
                check=True, capture_output=True, text=True).stdout
            child = json.loads(out.strip().splitlines()[-1])
            if child['masked_by_earlier_peak']:
                result['masked'] = True
                log(f'memory ({key}): the step did not exceed the process\'s '
                    'earlier peak; the number is meaningless')
            result[key] = child['peak_bytes']
        log(f'{settings.device.type} memory {key}: '
            f'{result[key] / 2**20:.1f} MiB')
    result['reduction'] = 1 - result['with_cp'] / result['plain']
    result.setdefault('masked', False)
    return result


# -- detector -----------------------------------------------------------------
def build_detector(which: str, arch: str,
                   rois: int | None = None) -> nn.Module:
    """Cascade Mask R-CNN T from our config or mmdet's, no pretrained weights.

    SyncBN (in both configs' box heads) becomes BN, as mmengine's runner
    does outside distributed training. ``rois`` overrides the RoIs sampled
    per image in each cascade stage (512 in both configs).
    """
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings

    if which == 'ours':
        cfg = Config.fromfile(OURS_DET_CONFIG)
    else:
        import mmdet
        cfg = Config.fromfile(osp.join(
            osp.dirname(mmdet.__file__), '.mim', 'configs', MMDET_DET_CONFIG))
    import_modules_from_strings(**cfg['custom_imports'])
    cfg.model.backbone.init_cfg = None
    if arch != 'tiny':
        depths, dims = ARCHS[arch]['depths'], ARCHS[arch]['dims']
        cfg.model.backbone.arch = (
            arch if which == 'ours' else
            dict(depths=list(depths), channels=list(dims)))
        cfg.model.neck.in_channels = list(dims)
    if rois is not None:
        for stage in cfg.model.train_cfg.rcnn:
            stage.sampler.num = rois
    init_default_scope('mmdet')
    return revert_sync_batchnorm(MMDET_MODELS.build(cfg.model))


def share_weights(ours: nn.Module, theirs: nn.Module) -> None:
    """Give mmdet's detector our detector's weights, backbone keys mapped.

    With equal weights both detectors propose the same boxes, so their RoI
    heads do the same work and only the backbones' speed differs.
    """
    from convnext_dense.models.checkpoint import from_official
    state = ours.state_dict()
    backbone = {k[len('backbone.'):]: v for k, v in state.items()
                if k.startswith('backbone.')}
    # mmpretrain's schema carries its own 'backbone.' prefix
    mapped = from_official(backbone, 'mmpretrain')
    rest = {k: v for k, v in state.items() if not k.startswith('backbone.')}
    theirs.load_state_dict({**mapped, **rest}, strict=True)


def detector_batch(size: tuple[int, int, int]) -> dict:
    """A fixed batch of random images with boxes and masks (mmdet's demo
    inputs), as a data loader would hand it to ``train_step``."""
    from mmdet.testing import demo_mm_inputs
    batch, height, width = size
    return demo_mm_inputs(
        batch_size=batch, image_shapes=[(3, height, width)] * batch,
        num_items=[8] * batch, num_classes=80, with_mask=True)


def measure_detector(settings: DeviceSettings, arch: str,
                     with_mmdet: bool, log: Callable[[str], None]) -> dict:
    from mmengine.optim import AmpOptimWrapper, OptimWrapper

    from convnext_dense.engine.channels_last import ChannelsLastHook

    device = settings.device
    torch.manual_seed(0)
    models = {'ours': build_detector('ours', arch, settings.det_rois)}
    if with_mmdet:
        models['mmdet'] = build_detector('mmdet', arch, settings.det_rois)
        share_weights(models['ours'], models['mmdet'])
    models['ours, channels-last'] = copy.deepcopy(models['ours'])
    ChannelsLastHook().apply(models['ours, channels-last'])
    batch = detector_batch(settings.det_size)
    # fp16 autocast on the GPU, as the model zoo's "amp" configs; the CPU has
    # no AmpOptimWrapper in mmengine
    amp = device.type == 'cuda'
    steps = {}
    for name, model in models.items():
        model.to(device).train()
        # lr 0: the step costs what a real one costs, but the weights (equal
        # across contenders) stay equal, so every round does the same work
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.)
        wrapper = (AmpOptimWrapper(optimizer=optimizer, dtype='float16')
                   if amp else OptimWrapper(optimizer=optimizer))

        def step(model: nn.Module = model, wrapper=wrapper) -> None:
            # every round draws the same random numbers. Ours and mmdet's
            # backbone draw drop-path masks differently, so their RoI
            # samples differ, but not their count: the sampler takes a
            # fixed number per image, at most a quarter positive, and adds
            # the 8 ground-truth boxes as positives (with 32 RoIs the
            # positives are always 8; with 512 more may overlap a box)
            torch.manual_seed(1)
            model.train_step(copy.deepcopy(batch), wrapper)
        steps[name] = step
    times = interleaved_times(steps, replace(settings, inner=1))
    seconds = {name: statistics.median(t) for name, t in times.items()}
    for name, value in seconds.items():
        log(f'{device.type} detector {name}: {value:.3f} s/iter')
    return dict(device=device.type, size=settings.det_size,
                dtype='fp16 autocast' if amp else 'fp32', seconds=seconds,
                spread=max(spread(t) for t in times.values()))


# -- report -------------------------------------------------------------------
def _version(module: str) -> str:
    try:
        return __import__(module).__version__
    except ImportError:
        return 'not installed'


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    flags: set[str] = set()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    cpu = line.split(':', 1)[1].strip()
                elif line.startswith('flags'):
                    flags = set(line.split(':', 1)[1].split())
                    break
    except OSError:
        pass
    # without these, bf16 matmuls are emulated in fp32 and run slower
    bf16 = sorted(flags & {'avx512_bf16', 'amx_bf16'}) or ['none']
    gpu = (torch.cuda.get_device_name(0) if torch.cuda.is_available()
           else 'none')
    return dict(cpu=cpu, cores=os.cpu_count(), gpu=gpu,
                threads=torch.get_num_threads(), bf16=', '.join(bf16))


def _ratio_cell(row: ThroughputRow, other: str) -> str:
    """'0.98x (0.91-1.04)': the ratio of medians, then the rounds' range."""
    if row.ratio(other) is None:
        return '-'
    low, high = row.round_ratios[other]
    return f'{row.ratio(other):.2f}x ({low:.2f}-{high:.2f})'


def _target(rows: list[ThroughputRow], other: str,
            threshold: float) -> tuple[str, str]:
    ratios = [(row.ratio(other), row) for row in rows
              if row.ratio(other) is not None]
    if not ratios:
        return 'not measured', '-'
    worst, row = min(ratios, key=lambda item: item[0])
    met = sum(r >= threshold for r, _ in ratios)
    median = statistics.median(r for r, _ in ratios)
    # below the threshold in every round, not only in the medians
    below = sum(r.round_ratios[other][1] < threshold for _, r in ratios)
    return (f'{met} of {len(ratios)} cells; lowest {worst:.2f}x '
            f'({row.device} {fmt_size(row.size)} {row.dtype} {row.layout} '
            f'{row.pass_}); median {median:.2f}x; below {threshold:.1f}x in '
            f'every round: {below} of {len(ratios)} cells',
            'yes' if met == len(ratios) else 'no')


def render(report: dict) -> str:
    """The markdown page."""
    info = report['machine']
    lines = [
        '# Benchmarks',
        '',
        f'Written by `tools/analysis/benchmark.py` on {report["date"]}; '
        'rerun the command below rather than editing by hand.',
        '',
    ]
    if not report.get('complete', True):
        lines += ['**Incomplete**: written after each part; the run had not '
                  'finished (or was stopped) when this page was written.', '']
    lines += [
        '## Machine and command',
        '',
        '| | |',
        '|---|---|',
        f'| CPU | {info["cpu"]}, {info["cores"]} cores, torch threads '
        f'{info["threads"]}; bf16 instructions: {info["bf16"]} |',
        f'| GPU | {info["gpu"]} |',
        f'| load average (1 min) at start / end | '
        f'{report["load"][0]:.2f} / {report["load"][1]:.2f} |',
        '| versions | ' + ', '.join(
            f'{k} {v}' for k, v in report['versions'].items()) + ' |',
        '',
        '```bash',
        report['command'],
        '```',
        '',
        'Method: the contenders are timed in alternation (the order rotates '
        'each round) after warm-up rounds; each number is the median of '
        f'{report["repeats"]} timed rounds. Clock: '
        f'{report["clocks"]}. "spread" is the largest '
        '(max - min) / median over the contenders of a row: the noise of '
        'that row. Ratios are images/s of ours over images/s of the other '
        '(above 1: ours is faster): the ratio of the medians, and in '
        'brackets the lowest and highest ratio within one round, where the '
        'contenders run back to back. Random weights; drop path 0 in the '
        'backbone rows.',
        '',
    ]
    rows: list[ThroughputRow] = report['throughput']
    det = report['detector']
    mem = report['memory']
    lines += ['## Targets', '', '| target | measured | met |',
              '|---|---|---|']
    text, met = _target(rows, 'timm', 1.0)
    lines.append(f'| backbone throughput, ours >= 1.0x timm in matching '
                 f'layout, dtype and pass | {text} | {met} |')
    text, met = _target(rows, 'mmpretrain', 1.2)
    lines.append(f'| backbone throughput, ours >= 1.2x mmpretrain | {text} '
                 f'| {met} |')
    for m in mem:
        lines.append(
            f'| with_cp cuts the backbone\'s peak training memory by >= 40% '
            f'({m["device"]}, {fmt_size(m["size"])}) | '
            f'{100 * m["reduction"]:.0f}% | '
            f'{"yes" if m["reduction"] >= 0.4 else "no"} |')
    for d in det:
        if 'mmdet' in d['seconds']:
            ratio = d['seconds']['mmdet'] / d['seconds']['ours']
            lines.append(
                f'| Cascade Mask R-CNN T iteration, ours no slower than '
                f'mmdet\'s ConvNeXt config ({d["device"]}, '
                f'{fmt_size(d["size"])}) | {ratio:.2f}x | '
                f'{"yes" if ratio >= 1.0 else "no"} |')
    lines += [
        '', '## Backbone throughput (images/s)', '',
        'ConvNeXt-T with random weights. timm: `convnext_tiny`, '
        '`features_only=True` (the four stage outputs, without the output '
        'LayerNorms that ours and mmpretrain apply); mmpretrain: '
        '`mmpretrain.models.backbones.ConvNeXt(arch=\'tiny\', '
        'out_indices=(0, 1, 2, 3), gap_before_final_norm=False)`. '
        'Input BATCHxHEIGHTxWIDTH; AMP rows run under `torch.autocast`.',
        '',
        '| device | input | dtype | layout | pass | ours | timm | mmpretrain '
        '| ours/timm | ours/mmpretrain | spread |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    for row in rows:
        ips = row.images_per_s
        lines.append(
            f'| {row.device} | {fmt_size(row.size)} | {row.dtype} | '
            f'{row.layout} | {row.pass_} | {ips["ours"]:.2f} | '
            + ' | '.join(f'{ips[n]:.2f}' if n in ips else '-'
                         for n in ('timm', 'mmpretrain'))
            + f' | {_ratio_cell(row, "timm")} | '
            f'{_ratio_cell(row, "mmpretrain")} | {100 * row.spread:.0f}% |')
    if report['compiled']:
        lines += [
            '', '## Compiled backbones: forward throughput (images/s)', '',
            'Channels-last forward, random weights. "ours, compiled": '
            '`compile_backbone` (`ChannelsLastHook(compile=True)`); "timm, '
            'compiled": `torch.compile(model, dynamic=True)`; backend '
            f'`{report["compile_backend"]}`. Compilation happens in the '
            'untimed warm-up round.', '',
            '| device | input | dtype | ours | ours, compiled | timm, '
            'compiled | ours compiled / timm compiled | ours compiled / ours '
            '| spread |', '|---|---|---|---|---|---|---|---|---|']
        for row in report['compiled']:
            ips = row.images_per_s
            lines.append(
                f'| {row.device} | {fmt_size(row.size)} | {row.dtype} | '
                f'{ips["ours"]:.2f} | {ips["ours, compiled"]:.2f} | '
                f'{ips["timm, compiled"]:.2f} | '
                f'{ips["ours, compiled"] / ips["timm, compiled"]:.2f}x | '
                f'{ips["ours, compiled"] / ips["ours"]:.2f}x | '
                f'{100 * row.spread:.0f}% |')
    lines += [
        '', '## Peak training memory of the backbone (ours)', '',
        'One fp32 forward+backward. GPU: `torch.cuda.max_memory_allocated` '
        'above the memory allocated before the step (weights, gradients, '
        'input). CPU: in a fresh process, the resident-size high-water mark '
        '(VmHWM, reset through /proc/self/clear_refs just before the step) '
        'over the resident size before the step.', '',
        '| device | input | without with_cp (MiB) | with_cp (MiB) | '
        'reduction |', '|---|---|---|---|---|']
    for m in mem:
        masked = (" (the step stayed below the process's earlier peak: "
                  'input too small to measure)' if m['masked'] else '')
        lines.append(
            f'| {m["device"]} | {fmt_size(m["size"])} | '
            f'{m["plain"] / 2**20:.1f} | {m["with_cp"] / 2**20:.1f} | '
            f'{100 * m["reduction"]:.0f}%{masked} |')
    lines += [
        '', '## Cascade Mask R-CNN T: one training iteration', '',
        '`model.train_step` (data preprocessor, losses, backward, AdamW '
        'step with lr 0, so that the weights and the work stay the same '
        'from round to round) on one fixed batch of random images with 8 '
        'boxes and masks each; RoIs sampled per image and cascade stage: '
        f'{report["det_rois"]}. ours: `configs/cascade_convnext_t.py`; '
        "mmdet: mmdet 3.3's "
        f'`configs/{MMDET_DET_CONFIG}` (mmpretrain backbone), given the '
        'same random weights (backbone keys mapped), so that both compute '
        'the same function; "ours, channels-last": ours under '
        '`ChannelsLastHook`. No pretrained weights.', '',
        '| device | input | dtype | ours (s) | ours, channels-last (s) | '
        'mmdet (s) | mmdet/ours time | spread |',
        '|---|---|---|---|---|---|---|---|']
    for d in det:
        s = d['seconds']
        mm = s.get('mmdet')
        mm_text = '- | -' if mm is None else (
            f'{mm:.3f} | {mm / s["ours"]:.2f}x')
        lines.append(
            f'| {d["device"]} | {fmt_size(d["size"])} | {d["dtype"]} | '
            f'{s["ours"]:.3f} | {s["ours, channels-last"]:.3f} | '
            f'{mm_text} | {100 * d["spread"]:.0f}% |')
    if report['notes']:
        lines += ['', '## Notes from this run', ''] + [
            f'- {n}' for n in report['notes']]
    lines += ['', USAGE.strip()]
    return '\n'.join(lines) + '\n'


USAGE = """
## Using the fast paths

All in `convnext_dense/engine/channels_last.py`.

- Channels-last end to end (weights of backbone, neck and heads, and the
  data preprocessor's batches): add to a config
  `custom_hooks = [dict(type='convnext_dense.ChannelsLastHook')]`. It is
  meant for the GPU, where PyTorch runs the 7x7 depthwise convolution
  through cuDNN only in channels-last; for the CPU compare the layouts in
  the tables above.
- mmcv's compiled ops read feature maps as raw NCHW memory: measured,
  `mmcv.ops.roi_align` on a channels-last map returns wrong values without
  an error (max abs error 1.3 on unit-normal features). The hook therefore
  makes every mmcv op module's inputs contiguous, and the backbone returns
  NCHW outputs for an NCHW input (channels-last ones for a channels-last
  input), so mmdet's RoI heads read correct features with or without the
  hook.
- `torch.compile` of the backbone:
  `dict(type='convnext_dense.ChannelsLastHook', compile=True)`, or a dict
  of `torch.compile` arguments. Compiled in place (`nn.Module.compile`), so
  checkpoint keys do not change. `dynamic=True` by default: one graph serves
  every input size of multi-scale training; there is one graph per mode
  (train, eval) and memory format, and a square first input makes dynamo
  tie height to width, costing one more compilation at the first
  non-square input. `dynamic=False` specialises (fastest for fixed-size
  segmentation crops) but recompiles at each new size.
- Mixed precision: fp16 for detection,
  `optim_wrapper = dict(type='AmpOptimWrapper', dtype='float16', ...)`;
  bf16 for segmentation, `dtype='bfloat16'`. mmengine's `AmpOptimWrapper`
  needs a GPU. mmcv 2.1 has no bf16 RoIAlign; the hook upcasts bf16 inputs
  of mmcv ops to fp32, but mmdet's RoI extractor casts the RoI coordinates
  to the feature dtype first, and bf16's 8-bit mantissa rounds a coordinate
  above 512 px to a multiple of 4 px: keep detection in fp16.
- Activation checkpointing: `model.backbone.with_cp=True` (see the memory
  table for what it saves).

Reading CPU numbers: on a CPU without AVX-512 BF16 or AMX (see the machine
table), PyTorch runs bf16 convolutions through its reference path
(`_slow_conv2d_forward`, one call per group for a depthwise convolution),
where a channels-last input costs a copy per group. Ours runs channels-last
inside whatever the input layout (the first LayerNorm's output is
channels-last), mmpretrain returns to NCHW after every LayerNorm, so the
bf16 NCHW rows favour mmpretrain there; on a GPU the depthwise convolution
is the reason to be channels-last.
"""


# -- main ---------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true',
                        help='smaller inputs that finish in minutes on a '
                        'CPU (see device_settings)')
    parser.add_argument('--device', default='auto',
                        choices=['auto', 'cpu', 'cuda'],
                        help='auto: the CPU, and the GPU when present')
    parser.add_argument('--arch', default='tiny', choices=sorted(ARCHS),
                        help="'test' is the tiny unit-test arch, for smoke "
                        'runs')
    parser.add_argument('--parts', nargs='+',
                        default=['throughput', 'memory', 'detector'],
                        choices=['throughput', 'memory', 'detector',
                                 'compiled'],
                        help='compiled (not by default): forward throughput '
                        'of ours and timm under torch.compile')
    parser.add_argument('--compiled-sizes', nargs='+', type=parse_size,
                        help="the 'compiled' part's inputs (default: the "
                        '224x224 ones of --sizes)')
    parser.add_argument('--compile-backend', default='inductor',
                        help="torch.compile backend of the 'compiled' part "
                        "('eager': dynamo's capture alone, for smoke runs)")
    parser.add_argument('--sizes', nargs='+', type=parse_size,
                        help='fp32 throughput inputs, BATCHxHxW')
    parser.add_argument('--amp-sizes', nargs='+', type=parse_size,
                        help='autocast throughput inputs (default: --sizes)')
    parser.add_argument('--dtypes', nargs='+', choices=sorted(DTYPES),
                        help='throughput dtypes, measured in this order '
                        '(default: fp32 fp16 bf16 on a GPU, fp32 bf16 on a '
                        'CPU; fp16 and bf16 under autocast)')
    parser.add_argument('--mem-size', type=parse_size)
    parser.add_argument('--det-size', type=parse_size)
    parser.add_argument('--det-rois', type=int,
                        help='RoIs sampled per image in each cascade stage '
                        "(default: the configs' 512; 32 with --quick)")
    parser.add_argument('--repeats', type=int, default=5,
                        help='timed rounds per measurement (median)')
    parser.add_argument('--warmup', type=int,
                        help='untimed rounds first (default: 1 CPU, 3 GPU)')
    parser.add_argument('--inner', type=int,
                        help='calls per timing (default: 1 CPU, 10 GPU)')
    parser.add_argument('--threads', type=int,
                        help='torch CPU threads (default: torch\'s)')
    parser.add_argument('--out', default=osp.join(REPO_ROOT, 'docs',
                                                  'benchmarks.md'))
    parser.add_argument('--strict', action='store_true',
                        help='raise when a part fails instead of noting it '
                        'in the page')
    parser.add_argument('--memory-child', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def _command(argv: list[str] | None) -> str:
    args = sys.argv[1:] if argv is None else argv
    return ' '.join(['python', 'tools/analysis/benchmark.py']
                    + [shlex.quote(a) for a in args])


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(json.loads(args.memory_child))))
        return {}
    if args.threads:
        torch.set_num_threads(args.threads)
    notes = []
    from convnext_dense.ops import mmcv_ops_source
    if mmcv_ops_source() == 'torchvision':
        notes.append('mmcv-lite: the detectors\' RoIAlign and NMS run on '
                     'convnext_dense.ops (torch/torchvision), in both '
                     'detectors alike.')
    if torch.cuda.is_available():
        # TF32 matmuls and convolutions in the fp32 GPU rows, as the paper's
        # A100 numbers (docs/reference.md §6); cuDNN picks its fastest kernels
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True

    def log(message: str) -> None:
        print(f'[benchmark {time.strftime("%H:%M:%S")}] {message}',
              flush=True)

    devices = []
    if args.device in ('auto', 'cpu'):
        devices.append(torch.device('cpu'))
    if args.device == 'cuda' or (args.device == 'auto'
                                 and torch.cuda.is_available()):
        devices.append(torch.device('cuda'))
    try:
        import mmpretrain  # noqa: F401
        have_mmpretrain = True
    except ImportError:
        have_mmpretrain = False
    if not have_mmpretrain:
        notes.append('mmpretrain is not installed (pip install -r '
                     'requirements/benchmark.txt): its columns and mmdet\'s '
                     'ConvNeXt config were not measured.')
    contenders = [n for n in BACKBONES
                  if n != 'mmpretrain' or have_mmpretrain]

    report = dict(
        date=datetime.datetime.now(datetime.timezone.utc).strftime(
            '%Y-%m-%d %H:%M UTC'),
        machine=machine_info(), command=_command(argv),
        load=[os.getloadavg()[0], 0.0], repeats=args.repeats,
        versions={m: _version(m) for m in (
            'torch', 'timm', 'mmpretrain', 'mmdet', 'mmcv', 'mmengine',
            'convnext_dense')},
        throughput=[], compiled=[], memory=[], detector=[], notes=notes,
        compile_backend=args.compile_backend,
        clocks='; '.join(f'{d.type}: {clock(d)[1]}' for d in devices),
        det_rois=', '.join(sorted({
            f'{d.type}: ' + str(device_settings(args, d).det_rois or
                                '512 (the configs\')')
            for d in devices})))
    report['versions'] = {'python': platform.python_version(),
                          **report['versions']}
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)

    def write_page(complete: bool = False) -> None:
        # after every throughput row and every part, so that a run stopped
        # at a time limit (a GPU lent for minutes) keeps what it measured
        report['load'][1] = os.getloadavg()[0]
        report['complete'] = complete
        with open(args.out, 'w') as f:
            f.write(render(report))

    def collect(key: str) -> Callable[[ThroughputRow], None]:
        def add(row: ThroughputRow) -> None:
            report[key].append(row)
            write_page()
        return add

    for device in devices:
        settings = device_settings(args, device)
        parts = dict(
            throughput=lambda: measure_throughput(
                settings, args.arch, contenders, log,
                on_row=collect('throughput')),
            compiled=lambda: measure_compiled(
                settings, args.arch, args.compile_backend, log,
                on_row=collect('compiled')),
            memory=lambda: report['memory'].append(measure_memory(
                settings, args.arch, torch.get_num_threads(), log)),
            detector=lambda: report['detector'].append(measure_detector(
                settings, args.arch, have_mmpretrain, log)))
        for part in args.parts:
            try:
                parts[part]()
            except Exception as error:  # noqa: BLE001
                # one failing part (e.g. mmcv built without CUDA ops) must
                # not lose the others' numbers: it is reported instead
                if args.strict:
                    raise
                notes.append(f'{part} on {device.type} failed: '
                             f'{type(error).__name__}: {error}')
                log(notes[-1])
            write_page()
    write_page(complete=True)
    log(f'wrote {args.out}')
    return report


if __name__ == '__main__':
    main()
