"""Numerics of the fast paths (convnext_dense/engine/channels_last.py).

Channels-last, bf16 autocast, torch.compile and with_cp must compute what
the plain NCHW fp32 model computes; ChannelsLastHook must convert a real
mmdet model (Mask R-CNN, whose RoIAlign reads raw NCHW memory) and leave its
losses and gradients unchanged. All on the tiny 'test' arch, on the CPU.
"""
from __future__ import annotations

import copy
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from timm.layers import DropPath

from convnext_dense.engine.channels_last import (ChannelsLastHook,
                                                 channels_last_ddp,
                                                 channels_last_inputs,
                                                 compile_backbone,
                                                 guard_mmcv_ops,
                                                 to_channels_last)
from convnext_dense.models.convnext import ConvNeXt
from convnext_dense.models.layers import Block
from helpers.random_weights import randomize_

CL = torch.channels_last


def images(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=CL) and not x.is_contiguous()


def outputs_loss(outs: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """A loss that weighs every output element differently."""
    gen = torch.Generator().manual_seed(7)
    return sum((out * torch.randn(out.shape, generator=gen)).sum()
               for out in outs)


# -- memory format ------------------------------------------------------------
@pytest.mark.parametrize('arch', ['test', 'v2-test'])
def test_channels_last_equals_nchw_fp32(arch: str) -> None:
    nchw = randomize_(ConvNeXt(arch), seed=1).eval()
    cl = copy.deepcopy(nchw).to(memory_format=CL)
    assert is_channels_last(cl.downsample_layers[1][1].weight)
    x = images((2, 3, 64, 96))
    with torch.no_grad():
        ref = nchw(x)
        outs = cl(x.contiguous(memory_format=CL))
    for out, r in zip(outs, ref):
        assert is_channels_last(out)
        # NCHW in, NCHW out: mmcv ops downstream read raw NCHW memory
        assert r.is_contiguous()
        torch.testing.assert_close(out, r, rtol=1e-5, atol=1e-5)
    assert ref[-1].abs().max() > 0.5  # the outputs are not vacuous


def test_channels_last_training_gradients_equal_nchw() -> None:
    nchw = randomize_(ConvNeXt('test', drop_path_rate=0.3), seed=2).train()
    cl = copy.deepcopy(nchw).to(memory_format=CL)
    x = images((2, 3, 64, 64))
    grads = []
    for model, inp in ((nchw, x), (cl, x.contiguous(memory_format=CL))):
        torch.manual_seed(5)  # the same drop-path masks
        outputs_loss(model(inp)).backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, rtol=1e-4,
                                   atol=1e-5,
                                   msg=lambda m, name=name: f'{name}: {m}')


# -- the fused layer scale / drop path / residual of Block --------------------
def unfused_block(block: Block, x: torch.Tensor) -> torch.Tensor:
    """The official formula: shortcut + drop_path(gamma * branch), written
    with timm's DropPath module and no fusion."""
    y = block.dwconv(x).permute(0, 2, 3, 1)
    y = block.pwconv2(block.act(block.pwconv1(block.norm(y))))
    if block.gamma is not None:
        y = y * block.gamma
    y = y.permute(0, 3, 1, 2)
    drop = DropPath(block.drop_prob) if block.drop_prob else nn.Identity()
    return x + drop.train(block.training)(y)


@pytest.mark.parametrize('layer_scale', [1e-6, None])
@pytest.mark.parametrize('drop_path', [0., 0.5])
@pytest.mark.parametrize('training', [False, True])
def test_fused_block_equals_unfused_formula(drop_path: float, training: bool,
                                            layer_scale: float | None) -> None:
    """Stochastic depth draws timm's DropPath samples, with layer scale
    (folded into it) and without (V2)."""
    block = randomize_(Block(16, drop_path=drop_path,
                             layer_scale_init_value=layer_scale), seed=3)
    block.train(training)
    x = images((8, 16, 12, 12)).contiguous(memory_format=CL)
    torch.manual_seed(11)
    out = block(x)
    torch.manual_seed(11)
    ref = unfused_block(block, x)
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    if drop_path and training:
        # some samples really were dropped: their output is the shortcut
        dropped = [(out[i] - x[i]).abs().max() == 0 for i in range(8)]
        assert 0 < sum(dropped) < 8


# -- bf16 autocast ------------------------------------------------------------
def test_bf16_autocast_close_to_fp32() -> None:
    """bf16 keeps 8 mantissa bits (relative step 2^-8 = 0.4%); measured over
    4 stages of random weights: max abs error <= 0.04 on O(1) outputs, mean
    relative error <= 0.5%. Tolerances: 0.1 and 1%."""
    model = randomize_(ConvNeXt('test'), seed=4).eval()
    x = images((2, 3, 64, 64), seed=4)
    for memory_format in (torch.contiguous_format, CL):
        model.to(memory_format=memory_format)
        xm = x.contiguous(memory_format=memory_format)
        with torch.no_grad():
            ref = model(xm)
            with torch.autocast('cpu', dtype=torch.bfloat16):
                outs = model(xm)
        for out, r in zip(outs, ref):
            # inference keeps the residual stream, and so the output
            # LayerNorm, in bf16 (no fp32 round trip between blocks)
            assert out.dtype == torch.bfloat16
            err = (out.float() - r).abs()
            assert err.max() > 1e-4, 'autocast did not run in bf16'
            assert err.max() < 0.1
            assert err.mean() / r.abs().mean() < 0.01


# -- with_cp ------------------------------------------------------------------
def test_with_cp_identical_in_channels_last() -> None:
    plain = randomize_(ConvNeXt('test', drop_path_rate=0.3), seed=6)
    ckpt = ConvNeXt('test', drop_path_rate=0.3, with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    x = images((2, 3, 64, 64)).contiguous(memory_format=CL)
    results = []
    for model in (plain, ckpt):
        model.to(memory_format=CL).train()
        torch.manual_seed(9)
        outs = model(x)
        outputs_loss(outs).backward()
        results.append((outs, {n: p.grad for n, p in
                               model.named_parameters()}))
    (outs_a, grads_a), (outs_b, grads_b) = results
    for a, b in zip(outs_a, outs_b):
        assert is_channels_last(b)
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], rtol=1e-6,
                                   atol=1e-7, msg=name)


# -- torch.compile ------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize('arch', ['test', 'v2-test'])
def test_compile_keeps_keys_and_outputs_and_one_graph_for_all_sizes(
        arch: str) -> None:
    """Dynamo with a counting backend that runs the captured graph eagerly:
    seconds instead of the minute inductor's code generation takes. V2's
    GRN (a float32 reduction inside a half/float graph) traces into the
    same single graph."""
    graphs = []

    def counting_backend(gm: torch.fx.GraphModule, example_inputs):
        graphs.append(gm)
        return gm.forward

    ref = randomize_(ConvNeXt(arch), seed=8).eval()
    model = copy.deepcopy(ref)
    keys = list(model.state_dict())
    compile_backbone(model, backend=counting_backend)
    assert list(model.state_dict()) == keys  # no '_orig_mod.' prefix
    with torch.no_grad():
        # a non-square first size: dynamo gives equal sizes one symbol, so a
        # square first input would tie H to W and recompile once
        for hw in ((64, 96), (96, 64), (128, 128)):
            x = images((2, 3, *hw))
            for out, r in zip(model(x), ref(x)):
                torch.testing.assert_close(out, r, rtol=1e-5, atol=1e-5)
    assert len(graphs) == 1, f'{len(graphs)} graphs for 3 input sizes'


@pytest.mark.slow
def test_inductor_compiled_backbone_equals_eager() -> None:
    """Inductor's generated C++ code; about 60 s of compilation on 2 cores."""
    ref = randomize_(ConvNeXt('test'), seed=8).eval()
    model = copy.deepcopy(ref)
    compile_backbone(model)
    x = images((2, 3, 64, 96))
    with torch.no_grad():
        for out, r in zip(model(x), ref(x)):
            torch.testing.assert_close(out, r, rtol=1e-5, atol=1e-5)


# -- mmcv op guard ------------------------------------------------------------
def test_guard_mmcv_ops_fixes_channels_last_and_bf16_roi_align() -> None:
    from mmcv.ops import RoIAlign

    # measured: unguarded, a channels-last map gives errors of about 1.3 on
    # unit-normal features, and a bf16 map raises "not implemented"
    container = nn.Sequential(RoIAlign((7, 7), spatial_scale=0.5))
    assert guard_mmcv_ops(container) == 1
    assert guard_mmcv_ops(container) == 0  # idempotent
    feats = images((2, 8, 32, 32))
    rois = torch.tensor([[0., 1., 2., 40., 50.], [1., 6., 3., 60., 36.]])
    roi_align = container[0]
    ref = roi_align(feats, rois)
    out = roi_align(feats.contiguous(memory_format=CL), rois)
    torch.testing.assert_close(out, ref, rtol=0, atol=0)
    out_bf16 = roi_align(feats.bfloat16(), rois.bfloat16())
    assert out_bf16.dtype == torch.float32
    # the features are rounded to bf16 and the RoI corners too (1 ulp of 60
    # is 0.25 px): agreement to a few percent of the O(1) values
    assert (out_bf16 - ref).abs().max() < 0.1


# -- ChannelsLastHook on a real detector --------------------------------------
@pytest.fixture(scope='module')
def mask_rcnn():
    """mmdet's Mask R-CNN with the 'test' ConvNeXt and few RoIs."""
    mmdet = pytest.importorskip('mmdet')
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    cfg = Config.fromfile(osp.join(
        osp.dirname(mmdet.__file__), '.mim', 'configs', '_base_', 'models',
        'mask-rcnn_r50_fpn.py'))
    cfg.model.backbone = dict(type='convnext_dense.ConvNeXt', arch='test')
    cfg.model.neck.in_channels = [16, 32, 64, 128]
    cfg.model.train_cfg.rpn_proposal.max_per_img = 100
    cfg.model.train_cfg.rcnn.sampler.num = 32
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MMDET_MODELS.build(cfg.model)
    randomize_(model.backbone, seed=12)
    return model


def detection_batch() -> dict:
    from mmdet.testing import demo_mm_inputs
    return demo_mm_inputs(
        batch_size=2, image_shapes=[(3, 64, 96)] * 2, num_items=[3, 3],
        num_classes=80, with_mask=True)


def test_hook_is_registered_in_the_scope() -> None:
    from mmengine.registry import HOOKS
    hook = HOOKS.build(dict(type='convnext_dense.ChannelsLastHook',
                            compile=dict(backend='eager')))
    assert isinstance(hook, ChannelsLastHook)
    assert hook.compile_kwargs == dict(backend='eager')
    with pytest.raises(TypeError, match='compile'):
        ChannelsLastHook(compile='yes')


def test_distributed_config_with_the_hook_wraps_channels_last() -> None:
    """DDP lays out its gradient buckets at wrap time, before hooks run:
    with the hook, a distributed config gets the wrapper that converts
    first (tests/e2e/test_distributed.py runs it under torchrun)."""
    from mmengine.config import Config
    from mmengine.registry import MODEL_WRAPPERS
    hook = dict(type='convnext_dense.ChannelsLastHook',
                module_names=('backbone', 'neck'))
    # mmengine's default wrapper, written out
    cfg = Config(dict(launcher='pytorch', custom_hooks=[hook],
                      find_unused_parameters=True))
    assert channels_last_ddp(cfg)
    wrapper = 'convnext_dense.ChannelsLastDistributedDataParallel'
    assert cfg.model_wrapper_cfg == dict(
        type=wrapper, broadcast_buffers=False, find_unused_parameters=True,
        module_names=['backbone', 'neck'])
    assert MODEL_WRAPPERS.get(wrapper).__name__ == wrapper.split('.')[1]
    # setup_cpu_distributed's wrapper keeps its arguments
    cfg = Config(dict(launcher='pytorch', custom_hooks=[hook],
                      model_wrapper_cfg=dict(
                          type='MMDistributedDataParallel', device_ids=None)))
    assert channels_last_ddp(cfg)
    assert cfg.model_wrapper_cfg.device_ids is None
    assert cfg.model_wrapper_cfg.type == wrapper
    # not distributed, no hook, another wrapper: unchanged
    for cfg in (dict(launcher='none', custom_hooks=[hook]),
                dict(launcher='pytorch', custom_hooks=[]),
                dict(launcher='pytorch', custom_hooks=[hook],
                     model_wrapper_cfg=dict(
                         type='MMFullyShardedDataParallel'))):
        cfg = Config(cfg)
        before = cfg.to_dict()
        assert not channels_last_ddp(cfg)
        assert cfg.to_dict() == before


def test_hook_converts_detector_and_keeps_losses_and_gradients(
        mask_rcnn) -> None:
    nchw = copy.deepcopy(mask_rcnn)
    cl = copy.deepcopy(mask_rcnn)
    hook = ChannelsLastHook()
    runner = SimpleNamespace(model=cl)
    hook.before_train(runner)
    hook.before_val(runner)  # a second call changes nothing
    assert is_channels_last(cl.backbone.downsample_layers[1][1].weight)
    assert is_channels_last(cl.neck.fpn_convs[0].conv.weight)
    assert is_channels_last(cl.roi_head.mask_head.convs[0].conv.weight)
    # the same Parameter objects: an optimizer built earlier still works
    assert (dict(cl.named_parameters())['backbone.stages.0.0.dwconv.weight']
            is cl.backbone.stages[0][0].dwconv.weight)
    assert len(cl.data_preprocessor._forward_hooks) == 1

    batch = detection_batch()
    results = []
    for model in (nchw, cl):
        model.train()
        data = model.data_preprocessor(copy.deepcopy(batch), True)
        results.append(data['inputs'])
        torch.manual_seed(3)  # the same RPN and RoI samples
        losses = model(**data, mode='loss')
        loss, log_vars = model.parse_losses(losses)
        model.zero_grad()
        loss.backward()
        results.append((log_vars, {n: p.grad for n, p in
                                   model.named_parameters()
                                   if p.grad is not None}))
    inputs_nchw, (logs_nchw, grads_nchw), inputs_cl, (logs_cl, grads_cl) = \
        results
    assert inputs_nchw.is_contiguous() and is_channels_last(inputs_cl)
    torch.testing.assert_close(inputs_cl, inputs_nchw, rtol=0, atol=0)
    # the RoI losses read RoIAlign features: a channels-last FPN map read as
    # NCHW would change loss_cls, loss_bbox and loss_mask
    assert logs_nchw.keys() == logs_cl.keys()
    for key in logs_nchw:
        assert logs_cl[key].item() == pytest.approx(
            logs_nchw[key].item(), rel=1e-4, abs=1e-5), key
    assert grads_nchw.keys() == grads_cl.keys()
    assert any(k.startswith('roi_head.mask_head') for k in grads_nchw)
    for name, grad in grads_nchw.items():
        # summation order differs between layouts, and a weight gradient
        # sums thousands of terms of both signs: measured, the worst element
        # (mask head's upsample) differs by 0.16% of that gradient's largest
        # value. A misread feature map would differ by O(100%).
        torch.testing.assert_close(grads_cl[name], grad, rtol=1e-3,
                                   atol=5e-3 * float(grad.abs().max()),
                                   msg=lambda m, name=name: f'{name}: {m}')


def test_channels_last_inputs_hook_converts_tensor_and_list() -> None:
    class Preprocessor(nn.Module):
        def forward(self, data: dict, training: bool = False) -> dict:
            return data

    pre = Preprocessor()
    handle = channels_last_inputs(pre)
    assert channels_last_inputs(pre) is handle  # idempotent
    batch = images((2, 3, 8, 8))
    out = pre(dict(inputs=batch, data_samples=['a', 'b']))
    assert is_channels_last(out['inputs'])
    assert out['data_samples'] == ['a', 'b']
    out = pre(dict(inputs=[batch, batch[0]]))
    assert is_channels_last(out['inputs'][0])
    assert out['inputs'][1].dim() == 3  # a 3-D tensor has no such layout
    handle.remove()
    assert pre(dict(inputs=batch))['inputs'].is_contiguous()
    assert to_channels_last('text') == 'text'
