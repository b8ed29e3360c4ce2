"""One training iteration in fp32 against bf16 autocast, for the benchmark
of :mod:`convnext_dense.analysis.bench_inference` (cases ``train-upernet`` and
``train-cascade``).

The models are the paper configs' (``upernet_convnext_t.py``,
``cascade_convnext_t.py``) with random weights, on one synthetic image with
annotations; ``quick`` substitutes the tiny 'test' backbone and small
sizes. Both contenders run ``model.train_step`` with the same SGD
optimizer: fp32 through mmengine's ``OptimWrapper``, bf16 through
:class:`~convnext_dense.engine.autocast.AutocastOptimWrapper`, timed in
alternating rounds.
"""
from __future__ import annotations

import os

import numpy as np
import torch

from convnext_dense.paths import REPO_ROOT as REPO

from .timing import interleaved_rounds

# image side of the quick cases and of the real ones
QUICK_SIZE, REAL_SIZE = 64, 512


def _model(name: str, quick: bool):
    from mmengine.config import Config

    from convnext_dense.tasks import build_model
    config = 'upernet_convnext_t.py' if name == 'train-upernet' else \
        'cascade_convnext_t.py'
    cfg = Config.fromfile(os.path.join(REPO, 'configs', config))
    cfg.model.backbone.init_cfg = None
    if quick:
        cfg.model.backbone.arch = 'test'
        channels = [16, 32, 64, 128]
        if name == 'train-upernet':
            cfg.model.decode_head.in_channels = channels
            cfg.model.decode_head.channels = 32
            cfg.model.auxiliary_head.in_channels = 64
            # the quick images as they are: the config pads every batch to
            # its 512x512 crop, which made the quick row a 512 one
            cfg.model.data_preprocessor.size = (QUICK_SIZE, QUICK_SIZE)
        else:
            cfg.model.neck.in_channels = channels
    torch.manual_seed(0)
    model = build_model(cfg)
    model.init_weights()
    return model.train()


def _batch(name: str, size: int) -> dict:
    """Two images (BatchNorm of the pooling branches needs more than one
    value per channel) with annotations."""
    import copy
    one = _sample(name, size)
    return dict(inputs=one['inputs'] * 2,
                data_samples=[copy.deepcopy(one['data_samples'][0])
                              for _ in range(2)])


def _sample(name: str, size: int) -> dict:
    image = torch.randint(0, 256, (3, size, size), dtype=torch.uint8)
    if name == 'train-upernet':
        from mmengine.structures import PixelData
        from mmseg.structures import SegDataSample
        sample = SegDataSample(metainfo=dict(img_shape=(size, size),
                                             ori_shape=(size, size)))
        labels = torch.randint(0, 150, (1, size, size))
        sample.gt_sem_seg = PixelData(data=labels)
        return dict(inputs=[image], data_samples=[sample])
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    sample = DetDataSample(metainfo=dict(
        img_shape=(size, size), ori_shape=(size, size),
        scale_factor=(1., 1.)))
    boxes = torch.tensor([[8., 10., size * .6, size * .7],
                          [size * .3, size * .2, size - 4., size - 8.]])
    masks = np.zeros((2, size, size), np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes.int().tolist()):
        masks[i, y1:y2, x1:x2] = 1
    sample.gt_instances = InstanceData(
        bboxes=boxes, labels=torch.tensor([3, 7]),
        masks=BitmapMasks(masks, size, size))
    return dict(inputs=[image], data_samples=[sample])


def time_training_case(name: str, quick: bool, rounds: int
                       ) -> tuple[dict[str, list[float]], float]:
    """Seconds per round of one training iteration for 'eager' (fp32)
    and 'bf16 autocast', and the difference of their first losses."""
    from mmengine.optim import OptimWrapper

    from convnext_dense.engine.autocast import AutocastOptimWrapper
    model = _model(name, quick)
    size = QUICK_SIZE if quick else REAL_SIZE
    data = _batch(name, size)
    wrappers = {
        'eager': OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.)),
        'bf16 autocast': AutocastOptimWrapper(
            optimizer=torch.optim.SGD(model.parameters(), lr=0.)),
    }
    losses = {}

    def step(contender: str):
        def run():
            log_vars = model.train_step(data, wrappers[contender])
            losses.setdefault(contender, float(log_vars['loss']))
        return run

    # lr 0: the weights stay as they are, each step does the same work
    torch.manual_seed(0)
    times = interleaved_rounds({k: step(k) for k in wrappers}, rounds)
    return times, abs(losses['bf16 autocast'] - losses['eager'])
