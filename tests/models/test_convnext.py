"""Tests of the ConvNeXt backbone (convnext_dense/models/convnext.py).

The numerical reference is timm's ConvNeXt, an independent implementation:
its random weights are mapped onto ours through the checkpoint table and the
stage outputs must agree to 1e-5. Everything else uses the tiny 'test' arch
(depths 1,1,1,1; dims 16..128) or builds large archs on the meta device.
"""
from __future__ import annotations

import copy
import math
import re

import pytest
import timm
import torch
import torch.nn as nn
import torch.nn.functional as F

from convnext_dense.checkpoint.backbone import to_official
from convnext_dense.models.convnext import ARCH_SETTINGS, ConvNeXt
from convnext_dense.models.layers import GRN, Block
from helpers.random_weights import randomize_

# timm's name for each of our published archs
TIMM_NAMES = {
    'tiny': 'convnext_tiny', 'small': 'convnext_small',
    'base': 'convnext_base', 'large': 'convnext_large',
    'xlarge': 'convnext_xlarge', 'v2-atto': 'convnextv2_atto',
    'v2-femto': 'convnextv2_femto', 'v2-pico': 'convnextv2_pico',
    'v2-nano': 'convnextv2_nano', 'v2-tiny': 'convnextv2_tiny',
    'v2-base': 'convnextv2_base', 'v2-large': 'convnextv2_large',
    'v2-huge': 'convnextv2_huge',
}


def layer_norm_nchw(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """Reference channels-first LayerNorm, written independently."""
    return F.layer_norm(x.permute(0, 2, 3, 1), norm.normalized_shape,
                        norm.weight, norm.bias, norm.eps).permute(0, 3, 1, 2)


def n_params(module: nn.Module, skip: str | None = None) -> int:
    return sum(p.numel() for name, p in module.named_parameters()
               if skip is None or not name.startswith(skip))


def expected_param_count(depths, dims, v2: bool, in_channels: int = 3) -> int:
    """Parameters of the dense backbone, counted from the paper's recipe."""
    total = in_channels * dims[0] * 16 + dims[0] + 2 * dims[0]  # stem
    for i in range(1, 4):  # LN + 2x2 conv
        total += 2 * dims[i - 1] + dims[i - 1] * dims[i] * 4 + dims[i]
    for depth, c in zip(depths, dims):
        block = (49 * c + c) + 2 * c + (4 * c * c + 4 * c) + (4 * c * c + c)
        block += 2 * 4 * c if v2 else c  # GRN gamma/beta or layer scale
        total += depth * block
    return total + sum(2 * c for c in dims)  # norm0..3


# -- parity with timm -------------------------------------------------------
@pytest.mark.parametrize('arch', ['tiny', 'v2-atto'])
def test_stage_outputs_match_timm(arch: str) -> None:
    torch.manual_seed(0)
    # convnextv2_atto keeps timm's own conv_mlp=True: its pointwise layers
    # are 1x1 convs with (C_out, C_in, 1, 1) weights, a second code path
    ref = randomize_(
        timm.create_model(TIMM_NAMES[arch], pretrained=False, num_classes=0),
        seed=1).eval()
    mapped, unknown = to_official(ref.state_dict(), 'timm')
    assert unknown == []
    backbone = {k: v for k, v in mapped.items()
                if not k.startswith(('norm.', 'head.'))}

    model = randomize_(ConvNeXt(arch), seed=2).eval()
    dense_norms = {k: v for k, v in model.state_dict().items()
                   if k.startswith('norm')}
    # strict: every tensor of ours comes from timm, except norm0..3
    model.load_state_dict({**backbone, **dense_norms}, strict=True)

    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = ref.forward_intermediates(
            x, indices=4, intermediates_only=True)
        expected = [layer_norm_nchw(f, getattr(model, f'norm{i}'))
                    for i, f in enumerate(feats)]
        for inp in (x, x.contiguous(memory_format=torch.channels_last)):
            outs = model(inp)
            assert len(outs) == 4
            for i, (out, exp) in enumerate(zip(outs, expected)):
                assert out.shape == exp.shape == (
                    1, model.dims[i], 64 // 4 // 2**i, 64 // 4 // 2**i)
                diff = (out - exp).abs().max().item()
                assert diff <= 1e-5, f'stage {i}: max abs diff {diff}'
                # timm's features are O(1) after our norm: not a vacuous test
                assert exp.abs().max() > 0.5


@pytest.mark.parametrize('arch', ['test', 'v2-test'])
def test_channels_last_input_gives_channels_last_outputs(arch: str) -> None:
    model = ConvNeXt(arch).eval()
    x = torch.randn(2, 3, 64, 64).contiguous(
        memory_format=torch.channels_last)
    with torch.no_grad():
        outs = model(x)
        ref = model(x.contiguous())
    for out, r in zip(outs, ref):
        assert out.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(out, r, rtol=1e-5, atol=1e-5)


# -- params and archs ---------------------------------------------------------
def test_tiny_param_count_equals_timm_minus_head() -> None:
    torch.manual_seed(0)
    ours = ConvNeXt('tiny')
    ref = timm.create_model('convnext_tiny', pretrained=False)
    head = n_params(ref) - n_params(ref, skip='head.')
    # the classifier's head: final LN (2 x 768) + fc (768 x 1000 + 1000)
    assert head == 2 * 768 + 768 * 1000 + 1000
    # ours minus its four dense-only output norms
    assert n_params(ours, skip='norm') == n_params(ref) - head == 27_818_592
    # with a classifier head added, the paper's 28.6M
    assert round((n_params(ours, skip='norm') + head) / 1e6, 1) == 28.6


@pytest.mark.parametrize('arch', sorted(ARCH_SETTINGS))
def test_every_arch_builds_with_the_right_param_count(arch: str) -> None:
    with torch.device('meta'):  # no memory, no init cost
        model = ConvNeXt(arch)
        timm_model = (timm.create_model(TIMM_NAMES[arch], pretrained=False)
                      if arch in TIMM_NAMES else None)
    settings = ARCH_SETTINGS[arch]
    assert model.depths == tuple(settings['depths'])
    assert model.dims == tuple(settings['dims'])
    assert model.use_grn == settings.get('v2', False)
    assert n_params(model) == expected_param_count(
        settings['depths'], settings['dims'], model.use_grn)
    if timm_model is not None:
        assert n_params(model, skip='norm') == n_params(
            timm_model, skip='head.')
    assert model.num_layers == 3 + math.ceil(settings['depths'][2] / 3)


def test_unknown_arch_raises_naming_it() -> None:
    with pytest.raises(ValueError, match="unknown ConvNeXt arch 'gigantic'"):
        ConvNeXt('gigantic')
    with pytest.raises(ValueError, match='depths and dims'):
        ConvNeXt(dict(depths=(1, 1, 1, 1)))
    with pytest.raises(ValueError, match='4 stages'):
        ConvNeXt(dict(depths=(1, 1, 1), dims=(8, 16, 32)))


def test_arch_aliases() -> None:
    with torch.device('meta'):
        assert ConvNeXt('t').depths == ConvNeXt('tiny').depths == (3, 3, 9, 3)
        assert ConvNeXt('xl').dims == (256, 512, 1024, 2048)
        assert ConvNeXt('convnextv2-atto').use_grn


# -- out_indices --------------------------------------------------------------
@pytest.mark.parametrize('out_indices, normalized, channels, strides', [
    ((0, 1, 2, 3), (0, 1, 2, 3), (16, 32, 64, 128), (4, 8, 16, 32)),
    ((-1, ), (3, ), (128, ), (32, )),
    (3, (3, ), (128, ), (32, )),
    ((1, 3), (1, 3), (32, 128), (8, 32)),
    ((2, 0), (0, 2), (16, 64), (4, 16)),
    ((-4, -2), (0, 2), (16, 64), (4, 16)),
])
def test_out_indices(out_indices, normalized, channels, strides) -> None:
    model = ConvNeXt('test', out_indices=out_indices).eval()
    assert model.out_indices == normalized
    assert model.out_channels == channels
    assert model.out_strides == strides
    # exactly one new norm per output
    assert sorted(n for n, _ in model.named_children()
                  if n.startswith('norm')) == [f'norm{i}' for i in normalized]
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == list(channels)
    assert [64 // o.shape[-1] for o in outs] == list(strides)


def test_negative_index_is_the_same_model() -> None:
    torch.manual_seed(0)
    a = ConvNeXt('test', out_indices=(-1, ))
    b = ConvNeXt('test', out_indices=(3, ))
    b.load_state_dict(a.state_dict(), strict=True)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(a.eval()(x)[0], b.eval()(x)[0])


@pytest.mark.parametrize('bad', [(4, ), (0, 5), (-5, ), (1, -3), ()])
def test_bad_out_indices_raise(bad) -> None:
    with pytest.raises(ValueError, match='out_indices'):
        ConvNeXt('test', out_indices=bad)


# -- init, layer scale, stochastic depth -------------------------------------
def test_layer_scale_init_and_v2_blocks() -> None:
    model = ConvNeXt('test', layer_scale_init_value=1.0)
    for stage in model.stages:
        for block in stage:
            assert torch.equal(block.gamma.data, torch.ones(block.gamma.shape))
            assert block.grn is None
    model = ConvNeXt('test', layer_scale_init_value=0.)
    assert all(b.gamma is None for s in model.stages for b in s)
    model = ConvNeXt('test')  # default 1e-6
    assert all(torch.all(b.gamma == 1e-6) for s in model.stages for b in s)
    # V2: no layer scale whatever is asked, GRN with (1, 1, 1, 4C) zeros
    model = ConvNeXt('v2-test', layer_scale_init_value=1.0)
    for stage, dim in zip(model.stages, model.dims):
        for block in stage:
            assert block.gamma is None
            assert block.grn.gamma.shape == (1, 1, 1, 4 * dim)
            assert not block.grn.gamma.any() and not block.grn.beta.any()


def test_init_weights_without_checkpoint() -> None:
    torch.manual_seed(0)
    model = ConvNeXt(dict(depths=(1, 1, 2, 1), dims=(32, 64, 128, 256)),
                     layer_scale_init_value=0.5)
    randomize_(model, seed=3)
    model.init_weights()
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            assert not module.bias.any(), name
        if isinstance(module, nn.LayerNorm):
            assert torch.all(module.weight == 1) and not module.bias.any()
    pw = model.stages[2][0].pwconv1.weight  # 512 x 128 draws
    assert abs(pw.std().item() - 0.02) < 0.002
    # layer scale is not touched by init_weights (randomize_ set it)
    assert model.stages[0][0].gamma.std() > 0.1


def test_drop_path_rates_grow_linearly_over_all_blocks() -> None:
    depths, rate = (2, 2, 3, 2), 0.4
    model = ConvNeXt(dict(depths=depths, dims=(8, 16, 32, 64)),
                     drop_path_rate=rate)
    got = [b.drop_prob for s in model.stages for b in s]
    total = sum(depths)
    assert got == pytest.approx([rate * k / (total - 1) for k in range(total)],
                                abs=1e-7)
    assert model.stages[0][0].drop_prob == 0
    assert got[-1] == pytest.approx(rate)


# -- training behaviour -------------------------------------------------------
def _loss(outs: tuple[torch.Tensor, ...], seed: int = 7) -> torch.Tensor:
    """A loss that weighs every output element differently."""
    gen = torch.Generator().manual_seed(seed)
    return sum((o * torch.randn(o.shape, generator=gen)).sum() for o in outs)


@pytest.mark.parametrize('arch', ['test', 'v2-test'])
@pytest.mark.parametrize('drop_path_rate', [0., 0.5])
def test_with_cp_same_outputs_and_gradients(arch: str,
                                            drop_path_rate: float) -> None:
    torch.manual_seed(0)
    plain = randomize_(
        ConvNeXt(arch, drop_path_rate=drop_path_rate), seed=4).train()
    ckpt = ConvNeXt(arch, drop_path_rate=drop_path_rate, with_cp=True).train()
    ckpt.load_state_dict(plain.state_dict(), strict=True)
    x = torch.randn(4, 3, 64, 64)
    results = []
    for model in (plain, ckpt):
        torch.manual_seed(123)  # the same drop-path masks for both
        outs = model(x)
        _loss(outs).backward()
        grads = {n: p.grad for n, p in model.named_parameters()}
        results.append((outs, grads))
    (outs_a, grads_a), (outs_b, grads_b) = results
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        assert grads_a[name] is not None and grads_b[name] is not None, name
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-5,
                                   atol=1e-6, msg=name)
    if drop_path_rate:
        # drop path really was active: train and eval outputs differ
        with torch.no_grad():
            eval_outs = plain.eval()(x)
        assert not torch.allclose(eval_outs[-1], outs_a[-1].detach())


def test_frozen_stages() -> None:
    model = ConvNeXt('test', frozen_stages=2, drop_path_rate=0.2)
    model.train()
    frozen = [model.downsample_layers[0], model.downsample_layers[1],
              model.stages[0], model.stages[1]]
    frozen_ids = {id(p) for m in frozen for p in m.parameters()}
    for module in frozen:
        assert all(not m.training for m in module.modules())
    for module in (model.downsample_layers[2], model.stages[2],
                   model.stages[3], model.norm0, model.norm1):
        assert all(m.training for m in module.modules())
    for param in model.parameters():
        assert param.requires_grad == (id(param) not in frozen_ids)
    _loss(model(torch.randn(2, 3, 64, 64))).backward()
    for name, param in model.named_parameters():
        if id(param) in frozen_ids:
            assert param.grad is None, name
        else:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
    # train(False) then train() again keeps them frozen and in eval
    model.eval().train()
    assert not model.stages[1].training and model.stages[2].training


def test_frozen_stages_out_of_range() -> None:
    with pytest.raises(ValueError, match='frozen_stages'):
        ConvNeXt('test', frozen_stages=5)


@pytest.mark.parametrize('arch', ['test', 'v2-test'])
@pytest.mark.parametrize('out_indices', [(0, 1, 2, 3), (1, 3)])
def test_gradients_reach_every_parameter(arch: str, out_indices) -> None:
    torch.manual_seed(0)
    model = ConvNeXt(arch, out_indices=out_indices).train()
    _loss(model(torch.randn(2, 3, 64, 64))).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert param.grad.abs().sum() > 0, name


# -- layer-wise decay ids (docs/reference.md §3) ------------------------------
def _tiny_expected_ids(decay_type: str) -> dict[str, int]:
    """The official id of every parameter group of ConvNeXt-T (N = 6)."""
    n = 6
    if decay_type == 'layer_wise':
        ids = {'downsample_layers.0': 0, 'stages.0': 1,
               'downsample_layers.1': 2, 'stages.1': 2,
               'downsample_layers.2': 3,
               'downsample_layers.3': n, 'stages.3': n}
        ids.update({f'stages.2.{b}': 3 + b // 3 for b in range(9)})
    else:
        ids = {f'downsample_layers.{i}': 0 for i in range(4)}
        ids.update({f'stages.{s}': s + 1 for s in range(4)})
    ids.update({f'norm{i}': n + 1 for i in range(4)})
    return ids


def _lookup(table: dict[str, int], name: str) -> int:
    # the longest prefix wins ('stages.2.4' over 'stages.2')
    prefix = max((p for p in table if name.startswith(p + '.')), key=len)
    return table[prefix]


@pytest.mark.parametrize('decay_type', ['layer_wise', 'stage_wise'])
def test_get_layer_id_table_for_tiny(decay_type: str) -> None:
    with torch.device('meta'):
        model = ConvNeXt('tiny')
    assert model.num_layers == 6
    table = _tiny_expected_ids(decay_type)
    names = [n for n, _ in model.named_parameters()]
    assert len(names) == 186  # every parameter checked below
    for name in names:
        assert model.get_layer_id(name, decay_type) == _lookup(table, name), \
            name
    # anything outside the backbone body: scale 1
    assert model.get_layer_id('neck.lateral_convs.0.conv.weight',
                              decay_type) == 7


def test_layer_scales_reproduce_reference_numbers() -> None:
    """The scales of docs/reference.md §3: lr scale = rate ** (N + 1 - id)."""
    with torch.device('meta'):
        model = ConvNeXt('tiny')
    n = model.num_layers

    def scale(name: str, decay_type: str, rate: float) -> float:
        return round(rate**(n + 1 - model.get_layer_id(name, decay_type)), 3)

    # Cascade T: layer_wise, 0.7
    got = [scale(k, 'layer_wise', 0.7) for k in (
        'downsample_layers.0.0.weight', 'stages.0.0.dwconv.weight',
        'stages.1.2.pwconv1.weight', 'stages.2.0.gamma', 'stages.2.3.gamma',
        'stages.2.8.gamma', 'stages.3.2.norm.bias', 'norm3.weight')]
    assert got == [0.082, 0.118, 0.168, 0.240, 0.343, 0.490, 0.70, 1.0]
    # UperNet T: stage_wise, 0.9
    got = [scale(k, 'stage_wise', 0.9) for k in (
        'downsample_layers.2.1.weight', 'stages.0.0.gamma', 'stages.1.0.gamma',
        'stages.2.8.gamma', 'stages.3.0.gamma', 'norm0.bias')]
    assert got == [0.478, 0.531, 0.590, 0.656, 0.729, 1.0]


def test_get_layer_id_small_has_twelve_layers() -> None:
    with torch.device('meta'):
        model = ConvNeXt('small')
    assert model.num_layers == 12
    assert model.get_layer_id('stages.2.26.pwconv2.weight') == 11
    assert model.get_layer_id('downsample_layers.3.1.weight') == 12
    assert model.get_layer_id('norm2.weight') == 13


def test_unknown_decay_type_raises() -> None:
    model = ConvNeXt('test')
    with pytest.raises(ValueError, match="unknown decay_type 'block_wise'"):
        model.get_layer_id('stages.0.0.dwconv.weight', 'block_wise')


def test_deepcopy_and_registry_build() -> None:
    """Configs build the backbone as type='convnext_dense.ConvNeXt'."""
    from mmengine.registry import MODELS as ROOT
    model = ROOT.build(dict(type='convnext_dense.ConvNeXt', arch='test',
                            out_indices=(1, 2)))
    assert isinstance(model, ConvNeXt) and model.out_channels == (32, 64)
    assert copy.deepcopy(model).out_strides == (8, 16)


# -- GRN in half precision (docs/reference.md §7) -----------------------------
def _grn_with_fp16_sum_of_squares(x: torch.Tensor, grn: nn.Module
                                  ) -> torch.Tensor:
    """The formula of the old GRN with its sum of squares held in fp16, as a
    pure-fp16 backend (TensorRT, a fused kernel) computes it. Eager
    ``torch.norm`` on fp16 accumulates in fp32 and rounds only the norm, so
    it stays finite here; a backend that keeps the sum in fp16 does not."""
    sum_sq = (x * x).sum(dim=(1, 2), keepdim=True, dtype=torch.float16)
    gx = sum_sq.sqrt()
    nx = gx / (gx.mean(dim=-1, keepdim=True) + grn.eps)
    return grn.gamma * (x * nx) + grn.beta + x


def test_v2_block_in_pure_fp16_stays_finite_and_close_to_fp32() -> None:
    """A V2 block, weights and input in torch.float16, on a 200x336 map
    whose activations at GRN have magnitude about 5.

    The sum of squares per channel is then about 200 * 336 * 25 = 1.7e6,
    past fp16's 65504. Held in fp16 (the old GRN on a pure-fp16 backend,
    emulated by ``_grn_with_fp16_sum_of_squares``) it is inf, every norm is
    inf, inf / mean(inf) is NaN, and the whole output is NaN. The GRN here
    accumulates in float32: finite and within 1e-2 (relative to the largest
    output) of the float32 block. (The old GRN, ``torch.norm`` in the input
    dtype, also passes the eager part of this test on the CPU, measured:
    PyTorch's CPU and CUDA reductions accumulate fp16 in fp32 and round only
    the norm, 1.3e3 here. Its statistics were fp32 by accident of the
    kernel; here they are by construction.)
    """
    torch.manual_seed(0)
    block = randomize_(Block(16, use_grn=True, layer_scale_init_value=0.),
                       seed=0).eval()
    with torch.no_grad():
        block.norm.weight.mul_(5)  # LayerNorm output of std ~5
    x32 = torch.randn(1, 16, 200, 336)
    x16 = x32.half()
    half = copy.deepcopy(block).half()
    seen = {}
    half.grn.register_forward_hook(
        lambda mod, args, out: seen.update(x=args[0], out=out))
    with torch.no_grad():
        out16 = half(x16)
        out32 = block(x16.float())
    grn_in = seen['x']
    assert grn_in.dtype == torch.float16 and seen['out'].dtype == torch.float16
    assert 3 < grn_in.float().abs().max(dim=-1).values.mean() < 30
    sum_sq = grn_in.float().pow(2).sum(dim=(1, 2))
    assert (sum_sq > 65504).all()  # every channel overflows fp16

    assert out16.dtype == torch.float16 and torch.isfinite(out16).all()
    err = (out16.float() - out32).abs().max() / out32.abs().max()
    assert err <= 1e-2, err
    # the GRN alone, on the same fp16 input, against float32
    ref = block.grn(grn_in.float())
    err = (seen['out'].float() - ref).abs().max() / ref.abs().max()
    assert err <= 1e-2, err

    # the old formula with an fp16 sum of squares: NaN everywhere
    with torch.no_grad():
        old = _grn_with_fp16_sum_of_squares(grn_in, half.grn)
    assert torch.isnan(old).all()


def test_grn_statistics_are_float32_under_autocast() -> None:
    grn = randomize_(GRN(64), seed=1)
    x = torch.randn(2, 8, 8, 64)
    with torch.autocast('cpu', dtype=torch.bfloat16), torch.no_grad():
        out = grn(x.bfloat16())
    assert out.dtype == torch.bfloat16
    with torch.no_grad():
        ref = grn(x.bfloat16().float())
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)


# -- layer ids of the V2 depths (docs/reference.md §1, §3) --------------------
# N = 3 + ceil(stage-2 depth / 3), written out per arch
V2_NUM_LAYERS = {'v2-atto': 5, 'v2-femto': 5, 'v2-pico': 5, 'v2-nano': 6,
                 'v2-tiny': 6, 'v2-base': 12, 'v2-large': 12, 'v2-huge': 12}


def test_v2_num_layers_table_covers_every_v2_arch() -> None:
    assert sorted(V2_NUM_LAYERS) == sorted(
        a for a in ARCH_SETTINGS if a.startswith('v2-') and a != 'v2-test')


@pytest.mark.parametrize('arch', sorted(V2_NUM_LAYERS))
def test_v2_layer_ids_are_exact(arch: str) -> None:
    """Every parameter's id against the rule written out independently; the
    last stage-2 group is exactly N - 1, and layer_wise uses every id from
    0 to N + 1 (no gap, none past N + 1, so no lr scale above 1)."""
    with torch.device('meta'):
        model = ConvNeXt(arch)
    n = V2_NUM_LAYERS[arch]
    depths = ARCH_SETTINGS[arch]['depths']
    assert model.num_layers == n
    assert 3 + (depths[2] - 1) // 3 == n - 1  # the last group of stage 2
    layer_wise = {'downsample_layers.0': 0, 'stages.0': 1,
                  'downsample_layers.1': 2, 'stages.1': 2,
                  'downsample_layers.2': 3,
                  'downsample_layers.3': n, 'stages.3': n}
    layer_wise.update({f'stages.2.{b}': 3 + b // 3 for b in range(depths[2])})
    stage_wise = {f'downsample_layers.{i}': 0 for i in range(4)}
    stage_wise.update({f'stages.{s}': s + 1 for s in range(4)})
    for table in (layer_wise, stage_wise):
        table.update({f'norm{i}': n + 1 for i in range(4)})
    seen = set()
    for name, _ in model.named_parameters():
        for decay_type, table in (('layer_wise', layer_wise),
                                  ('stage_wise', stage_wise)):
            layer_id = model.get_layer_id(name, decay_type)
            assert layer_id == _lookup(table, name), (name, decay_type)
            assert 0 <= layer_id <= n + 1
            if decay_type == 'layer_wise':
                seen.add(layer_id)
    assert seen == set(range(n + 2))  # every id from 0 to N + 1 is used


# -- init_cfg: what init_weights would ignore is refused ----------------------
@pytest.mark.parametrize('init_cfg, message', [
    (dict(type='Kaiming', layer='Conv2d'), "{'type': 'Kaiming'"),
    ([dict(type='Pretrained', checkpoint='a.pth')], 'must be None'),
    (dict(type='Pretrained', checkpoint='a.pth', map_location='cpu'),
     "['map_location'] would be ignored"),
    (dict(type='Pretrained'), 'needs checkpoint'),
])
def test_ignored_init_cfg_is_refused(init_cfg, message) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        ConvNeXt('test', init_cfg=init_cfg)


def test_pretrained_init_cfg_keys_are_accepted() -> None:
    ConvNeXt('test', init_cfg=None)
    ConvNeXt('test', init_cfg=dict(type='Pretrained', checkpoint='a.pth',
                                   prefix='backbone.', allow_partial=True))


@pytest.mark.parametrize('channels_last', [False, True])
def test_depthwise_gradients_keep_the_weight_strides(channels_last):
    """A depthwise weight (C, 1, 7, 7) fed channels-last activations gets a
    gradient whose size-1 dimension has another stride than the weight's;
    DDP compares strides and warned "Grad strides do not match bucket view
    strides" in every distributed CPU run. The block's hook restrides it."""
    model = ConvNeXt(arch='test', out_indices=(3, ))
    x = torch.randn(2, 3, 64, 64)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model(x)[0].sum().backward()
    checked = 0
    for name, param in model.named_parameters():
        if name.endswith('dwconv.weight'):
            assert param.grad.stride() == param.stride(), name
            checked += 1
    assert checked == 4
