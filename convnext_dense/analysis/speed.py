"""What the benchmark times: backbone throughput (ours, timm, mmpretrain),
the compiled backbones, and one training iteration of Cascade Mask R-CNN T
(our config against mmdet's own ConvNeXt config).
"""
from __future__ import annotations

import contextlib
import copy
import os.path as osp
import statistics
from dataclasses import replace
from typing import Callable

import torch
import torch.nn as nn

from convnext_dense.models.convnext import ARCH_SETTINGS
from convnext_dense.optional import require
from convnext_dense.paths import CONFIG_DIR

from .timing import (DeviceSettings, ThroughputRow, interleaved_times,
                     spread, timed_row)

OURS_DET_CONFIG = osp.join(CONFIG_DIR, 'cascade_convnext_t.py')
MMDET_DET_CONFIG = ('convnext/cascade-mask-rcnn_convnext-t-p4-w7_fpn_4conv1fc'
                    '-giou_amp-ms-crop-3x_coco.py')
BACKBONES = ('ours', 'timm', 'mmpretrain')
# the archs of ARCH_SETTINGS the benchmark builds in all three
# implementations: 'test' is the tiny arch of the unit tests (smoke runs),
# whose depths and dims are given explicitly to timm and mmpretrain
ARCHS = ('tiny', 'test')
DTYPES = {'fp32': None, 'bf16': torch.bfloat16, 'fp16': torch.float16}
LAYOUTS = {'NCHW': torch.contiguous_format,
           'channels-last': torch.channels_last}
PASSES = ('forward', 'forward+backward')


def build_backbone(name: str, arch: str, with_cp: bool = False) -> nn.Module:
    """One of the three ConvNeXt implementations, randomly initialised."""
    depths, dims = ARCH_SETTINGS[arch]['depths'], ARCH_SETTINGS[arch]['dims']
    if name == 'ours':
        from convnext_dense.models.convnext import ConvNeXt
        return ConvNeXt(arch, with_cp=with_cp)
    if name == 'timm':
        timm = require('timm', 'The timm column of the benchmark')
        kwargs = {} if arch == 'tiny' else dict(depths=depths, dims=dims)
        return timm.create_model(
            'convnext_tiny', pretrained=False, features_only=True, **kwargs)
    if name == 'mmpretrain':
        # mmpretrain 1.2.0 imports its BLIP models whenever transformers is
        # installed, and they fail to import under transformers >= 4.57
        # ("NoneType takes no arguments"); the backbone needs none of them
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
        depths = ARCH_SETTINGS[arch]['depths']
        dims = ARCH_SETTINGS[arch]['dims']
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
    from convnext_dense.checkpoint.key_schemas import from_official
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
