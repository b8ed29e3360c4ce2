"""Benchmark ConvNeXt-T and Cascade Mask R-CNN T against their references.

In one run, on the CPU and on the GPU when one is present, it measures:

1. Backbone throughput (images/s), forward and forward+backward, of
   convnext_dense's ConvNeXt-T against timm's ``convnext_tiny``
   (``features_only``) and mmpretrain's ``ConvNeXt`` (arch 'tiny', the four
   stage outputs, ``gap_before_final_norm=False``), in NCHW and channels-last,
   fp32 and autocast (bfloat16 on the CPU; float16 and bfloat16 on the GPU).
2. The backbone's peak training memory with and without ``with_cp``
   (:mod:`.memory`).
3. One training iteration of Cascade Mask R-CNN T: our config
   (configs/cascade_convnext_t.py) against mmdet's own ConvNeXt config
   (mmpretrain's backbone), both with the same random weights and batch, and
   ours again under
   :class:`convnext_dense.engine.channels_last.ChannelsLastHook`.
4. Only with ``--parts ... compiled``: forward throughput of ours and timm
   under ``torch.compile`` (channels-last; bf16 on the GPU), against ours
   eager.

How the contenders are timed: :mod:`.timing`; what is timed: :mod:`.speed`;
the page: :mod:`.report`. The markdown page (machine, versions, the exact
command, absolute numbers and ratios) is written to ``--out`` after every
row and part. mmpretrain is optional: without it, its columns and mmdet's
config are left out and the page says so.
"""
from __future__ import annotations

import argparse
import datetime
import os
import os.path as osp
import platform
import time
from typing import Callable

import torch

from .memory import measure_memory
from .report import machine_info, render, version_of
from .speed import (BACKBONES, measure_compiled, measure_detector,
                    measure_throughput)
from .timing import ThroughputRow, clock, device_settings


def run_benchmark(args: argparse.Namespace, command: str) -> dict:
    """Measure what ``args`` (``tools/analysis/benchmark.py``'s options)
    asks and write the page to ``args.out`` after every row.

    Returns:
        The report the page is rendered from.
    """
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
        notes.append('mmpretrain is not installed '
                     '(requirements/benchmark.txt, in an environment '
                     'without transformers >= 4.57): its columns and '
                     'mmdet\'s ConvNeXt config were not measured.')
    contenders = [n for n in BACKBONES
                  if n != 'mmpretrain' or have_mmpretrain]

    report = dict(
        date=datetime.datetime.now(datetime.timezone.utc).strftime(
            '%Y-%m-%d %H:%M UTC'),
        machine=machine_info(), command=command,
        load=[os.getloadavg()[0], 0.0], repeats=args.repeats,
        versions={m: version_of(m) for m in (
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
