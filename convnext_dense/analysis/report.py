"""The benchmark's markdown page: machine, command, targets, tables, and
how to use the fast paths it measures."""
from __future__ import annotations

import os
import platform
import statistics

import torch

from .speed import MMDET_DET_CONFIG
from .timing import ThroughputRow, fmt_size

# The targets of the page's Targets table (set by the project's speed
# issue; the paper states none)
# images/s of ours over timm's in matching layout, dtype and pass
TIMM_SPEEDUP = 1.0
# images/s of ours over mmpretrain's
MMPRETRAIN_SPEEDUP = 1.2
# with_cp's cut of the backbone's peak training memory
WITH_CP_MEMORY_CUT = 0.4
# the Cascade Mask R-CNN T iteration: mmdet's config time over ours
DETECTOR_SPEEDUP = 1.0


def version_of(module: str) -> str:
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
    text, met = _target(rows, 'timm', TIMM_SPEEDUP)
    lines.append(f'| backbone throughput, ours >= {TIMM_SPEEDUP:.1f}x timm in '
                 f'matching layout, dtype and pass | {text} | {met} |')
    text, met = _target(rows, 'mmpretrain', MMPRETRAIN_SPEEDUP)
    lines.append(f'| backbone throughput, ours >= {MMPRETRAIN_SPEEDUP:.1f}x '
                 f'mmpretrain | {text} | {met} |')
    for m in mem:
        lines.append(
            f'| with_cp cuts the backbone\'s peak training memory by >= '
            f'{100 * WITH_CP_MEMORY_CUT:.0f}% '
            f'({m["device"]}, {fmt_size(m["size"])}) | '
            f'{100 * m["reduction"]:.0f}% | '
            f'{"yes" if m["reduction"] >= WITH_CP_MEMORY_CUT else "no"} |')
    for d in det:
        if 'mmdet' in d['seconds']:
            ratio = d['seconds']['mmdet'] / d['seconds']['ours']
            lines.append(
                f'| Cascade Mask R-CNN T iteration, ours no slower than '
                f'mmdet\'s ConvNeXt config ({d["device"]}, '
                f'{fmt_size(d["size"])}) | {ratio:.2f}x | '
                f'{"yes" if ratio >= DETECTOR_SPEEDUP else "no"} |')
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
