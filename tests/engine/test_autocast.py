"""bf16 training and testing on the CPU (convnext_dense/engine/autocast.py).

- The toy run of tests/engine/toy_runner.py trained in bf16 and resumed
  from its epoch-1 checkpoint ends bitwise equal to the uninterrupted bf16
  run; the checkpoint holds the plain OptimWrapper state (no loss scaler)
  and float32 weights, and the run differs from fp32 (autocast was on).
- A paper config whose optim wrapper is ``AmpOptimWrapper`` (mmengine's,
  GPU only) builds and takes a training step on the CPU once
  ``--precision bf16`` resolved: the forward runs in bf16, the parameters,
  gradients and optimizer state stay float32.
"""
from __future__ import annotations

import uuid

import numpy as np
import pytest
import torch
from mmengine.runner import Runner

from convnext_dense.engine.autocast import (AutocastOptimWrapper,
                                            outputs_to_float32)
from convnext_dense.engine.precision import apply_training_precision
from convnext_dense.checkpoint.reader import \
    allow_mmengine_checkpoint_types

from .toy_runner import build_cfg


def _train(work_dir, precision: str, **kwargs) -> dict:
    cfg = build_cfg(str(work_dir), experiment_name=uuid.uuid4().hex,
                    **kwargs)
    apply_training_precision(cfg, precision, device='cpu')
    if kwargs.get('resume'):
        cfg.load_from = str(work_dir.parent / 'full' / 'epoch_1.pth')
    runner = Runner.from_cfg(cfg)
    model = runner.train()
    if precision == 'bf16':
        assert isinstance(runner.optim_wrapper, AutocastOptimWrapper)
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_bf16_toy_training_resumes_bitwise(tmp_path):
    full = _train(tmp_path / 'full', 'bf16')
    resumed = _train(tmp_path / 'resumed', 'bf16', resume=True)
    assert full.keys() == resumed.keys()
    for name in full:
        assert torch.equal(full[name], resumed[name]), name

    allow_mmengine_checkpoint_types()
    checkpoint = torch.load(tmp_path / 'full' / 'epoch_3.pth')
    # the fp32 OptimWrapper's state: the optimizer's, nothing else
    assert set(checkpoint['optimizer']) == {'state', 'param_groups'}
    for name, value in checkpoint['state_dict'].items():
        if value.is_floating_point():
            assert value.dtype == torch.float32, name
    for state in checkpoint['optimizer']['state'].values():
        assert state['momentum_buffer'].dtype == torch.float32

    fp32 = _train(tmp_path / 'fp32', 'fp32')
    assert not torch.equal(fp32['net.0.weight'], full['net.0.weight'])


def test_wrapper_refuses_fp16():
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match='bfloat16 only.*loss scaling'):
        AutocastOptimWrapper(dtype='float16', optimizer=optimizer)


def test_outputs_to_float32_converts_data_samples():
    from mmengine.structures import InstanceData
    from mmdet.structures import DetDataSample
    sample = DetDataSample()
    sample.pred_instances = InstanceData(
        bboxes=torch.ones(2, 4, dtype=torch.bfloat16),
        labels=torch.tensor([1, 2]))
    [out] = outputs_to_float32([sample])
    assert out.pred_instances.bboxes.dtype == torch.float32
    assert out.pred_instances.labels.dtype == torch.int64
    assert outputs_to_float32({'a': torch.ones(1, dtype=torch.float16)}
                              )['a'].dtype == torch.float32


@pytest.mark.slow  # Cascade Mask R-CNN T in emulated bf16 (no AMX here)
def test_paper_amp_config_trains_a_step_on_cpu_in_bf16():
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.optim import build_optim_wrapper
    from mmengine.structures import InstanceData

    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope

    from convnext_dense.models import ConvNeXt
    from convnext_dense.paths import REPO_ROOT

    cfg = Config.fromfile(f'{REPO_ROOT}/configs/cascade_convnext_t.py')
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'  # as published
    choice = apply_training_precision(cfg, 'bf16', device='cpu')
    assert choice.name == 'bf16'
    # shrunk as tests/configs/ does: the 'test' arch, few RoIs (4 per
    # stage: without bf16 units, the 256-channel convolutions of the neck
    # and heads take PyTorch's slow reference path; 18 -> 10 CPU s)
    cfg.model.backbone.update(arch='test', init_cfg=None)
    cfg.model.neck.in_channels = list(ConvNeXt(arch='test').out_channels)
    cfg.model.train_cfg.rpn_proposal.max_per_img = 8
    for stage in cfg.model.train_cfg.rcnn:
        stage.sampler.num = 4
    cfg.optim_wrapper.paramwise_cfg.num_layers = 4  # the 'test' arch's
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    assert isinstance(wrapper, AutocastOptimWrapper)

    seen = {}

    def record(module, args, out) -> None:
        seen['stem'] = out.dtype

    model.backbone.downsample_layers[0][0].register_forward_hook(record)
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    mask = np.zeros((1, 64, 64), np.uint8)
    mask[0, 10:50, 8:40] = 1
    sample = DetDataSample(metainfo=dict(
        img_shape=(64, 64), ori_shape=(64, 64), scale_factor=(1., 1.)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[8., 10., 40., 50.]]), labels=torch.tensor([3]),
        masks=BitmapMasks(mask, 64, 64))
    before = {name: p.detach().clone()
              for name, p in model.named_parameters()}
    log_vars = model.train_step(dict(inputs=[image], data_samples=[sample]),
                                wrapper)
    assert torch.isfinite(log_vars['loss'])
    assert seen['stem'] == torch.bfloat16  # the stem convolution
    moved = [name for name, p in model.named_parameters()
             if not torch.equal(p, before[name])]
    assert 'backbone.downsample_layers.0.0.weight' in moved
    for name, parameter in model.named_parameters():
        assert parameter.dtype == torch.float32, name
        if parameter.grad is not None:
            assert parameter.grad.dtype == torch.float32, name
    for state in wrapper.optimizer.state.values():
        assert all(v.dtype == torch.float32 for v in state.values()
                   if torch.is_tensor(v) and v.is_floating_point())
