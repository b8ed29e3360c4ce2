"""Parity with the independent implementations whose files we load:
DINOv3 ConvNeXt (transformers, timm, the authors' layout) and ConvNeXt-V2
(transformers, timm, mmpretrain, official names).

Each source model is built with random weights by its own library, written
to disk the way that library writes it, loaded into our backbone through
``init_cfg`` like a config does, and every stage output is compared with
the source's own features (docs/reference.md §2, §8). Tiny archs (depths
1, 1, 1, 1; dims 16..128) keep each case under a second.
"""
from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import timm
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from convnext_dense.checkpoint.backbone import (detect_format,
                                                load_backbone_checkpoint,
                                                read_checkpoint, to_official)
from convnext_dense.models.convnext import ConvNeXt

from models.test_convnext import layer_norm_nchw, randomize_

transformers = pytest.importorskip('transformers')

REPO = Path(__file__).resolve().parents[2]
DEPTHS, DIMS = (1, 1, 1, 1), (16, 32, 64, 128)
TINY = dict(depths=DEPTHS, dims=DIMS)
TINY_V2 = dict(depths=DEPTHS, dims=DIMS, v2=True)
TOL = 1e-5


def convert(*args: str) -> int:
    """tools/convert_checkpoint.py, in-process."""
    main = runpy.run_path(str(REPO / 'tools' / 'convert_checkpoint.py'),
                          run_name='convert_checkpoint')['main']
    return main([str(a) for a in args])


def load_ours(arch: dict, path: Path) -> tuple[ConvNeXt, dict]:
    """Our backbone loaded from ``path`` as a config loads it."""
    model = ConvNeXt(arch, init_cfg=dict(type='Pretrained',
                                         checkpoint=str(path)))
    model.init_weights()
    report = load_backbone_checkpoint(ConvNeXt(arch), path)
    return model.eval(), report


def assert_stages_match(model: ConvNeXt, x: torch.Tensor,
                        stage_maps: list[torch.Tensor],
                        normed: bool = False) -> None:
    """Our four outputs against the source's stage maps (N, C, H, W).

    Our outputs pass through norm0..3, which the sources' hidden states do
    not (unless ``normed``); the reference applies the same norm to theirs.
    """
    with torch.no_grad():
        outs = model(x)
    assert len(outs) == len(stage_maps) == 4
    for i, (out, ref) in enumerate(zip(outs, stage_maps)):
        if not normed:
            ref = layer_norm_nchw(ref, getattr(model, f'norm{i}'))
        assert out.shape == ref.shape, i
        err = (out - ref).abs().max().item()
        assert err <= TOL, f'stage {i}: max abs error {err}'


def assert_same_file(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].shape == b[key].shape, key
        assert torch.equal(a[key], b[key]), key


def only_dense_norms_missing(report: dict) -> None:
    """Strict: every body tensor came from the file; norm0..3 are ours."""
    assert sorted(report['missing']) == sorted(
        f'norm{i}.{p}' for i in range(4) for p in ('weight', 'bias'))
    assert report['unexpected'] == [] and report['ignored'] == []


# -- DINOv3, Hugging Face -----------------------------------------------------
def dinov3_hf(backbone: bool = False, seed: int = 0) -> nn.Module:
    from transformers import (DINOv3ConvNextBackbone, DINOv3ConvNextConfig,
                              DINOv3ConvNextModel)
    config = DINOv3ConvNextConfig(depths=list(DEPTHS),
                                  hidden_sizes=list(DIMS))
    cls = DINOv3ConvNextBackbone if backbone else DINOv3ConvNextModel
    return randomize_(cls(config), seed=seed).eval()


# how a DINOv3ConvNext file reaches a user: (writer, file name, key prefix)
DINOV3_HF_FILES = {
    # what save_pretrained writes and the Hub serves: 'stages.*',
    # 'layer_norm.*' (transformers renames to 'model.stages' on load)
    'model-safetensors': (lambda m, d: m.save_pretrained(d),
                          'model.safetensors', ''),
    # the module's own names, as torch.save(model.state_dict()) writes them
    'model-bin': (lambda m, d: torch.save(m.state_dict(),
                                          d / 'pytorch_model.bin'),
                  'pytorch_model.bin', 'model.'),
    'model-safetensors-module-names': (
        lambda m, d: m.save_pretrained(d, save_original_format=False),
        'model.safetensors', 'model.'),
    'backbone-safetensors': (lambda m, d: m.save_pretrained(d),
                             'model.safetensors', ''),
}


@pytest.mark.parametrize('case', sorted(DINOV3_HF_FILES))
def test_dinov3_hf_file_loads_with_identical_stages(tmp_path: Path,
                                                    case: str) -> None:
    writer, name, prefix = DINOV3_HF_FILES[case]
    src = dinov3_hf(backbone=case.startswith('backbone'))
    writer(src, tmp_path)
    path = tmp_path / name
    raw = read_checkpoint(path)
    assert detect_format(raw) == 'huggingface-dinov3'
    assert all(k.startswith(prefix) or k.startswith('layer_norm.')
               for k in raw)
    model, report = load_ours(TINY, path)
    only_dense_norms_missing(report)
    assert report['format'] == 'huggingface-dinov3'
    # the final norm of the whole model is kept under our classifier name
    assert ('norm.weight' in to_official(raw)[0]) == (
        not case.startswith('backbone'))

    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        hidden = src.model(x, output_hidden_states=True).hidden_states
    assert len(hidden) == 5  # the input, then the four stages
    assert_stages_match(model, x, list(hidden[1:]))

    # through tools/convert_checkpoint.py to the official layout and back
    official = tmp_path / 'official.pth'
    back = tmp_path / f'back-{name}'
    assert convert(path, official) == 0
    assert convert(official, back, '--to', 'huggingface-dinov3',
                   '--prefix', prefix) == 0
    assert_same_file(read_checkpoint(back), raw)
    # transformers itself reads the converted file back
    if name.endswith('.safetensors') and not prefix:
        (tmp_path / 'again').mkdir()
        (tmp_path / 'again' / 'model.safetensors').write_bytes(
            back.read_bytes())
        (tmp_path / 'again' / 'config.json').write_bytes(
            (tmp_path / 'config.json').read_bytes())
        again = type(src).from_pretrained(tmp_path / 'again').eval()
        for key, value in src.state_dict().items():
            assert torch.equal(again.state_dict()[key], value), key


# -- DINOv3, timm -------------------------------------------------------------
def test_timm_dinov3_is_the_plain_timm_schema(tmp_path: Path) -> None:
    """convnext_*.dinov3_lvd1689m: timm's ConvNeXt with no classifier."""
    dino = timm.create_model('convnext_tiny.dinov3_lvd1689m',
                             pretrained=False, **TINY)
    plain = timm.create_model('convnext_tiny', pretrained=False, **TINY)
    assert dino.pretrained_cfg['license'] == 'dinov3-license'
    assert dino.num_classes == 0  # head.norm kept, head.fc gone
    assert sorted(dino.state_dict()) == sorted(
        k for k in plain.state_dict() if not k.startswith('head.fc.'))

    src = randomize_(dino, seed=3).eval()
    path = tmp_path / 'model.safetensors'
    save_file(src.state_dict(), str(path))
    model, report = load_ours(TINY, path)
    assert report['format'] == 'timm'
    only_dense_norms_missing(report)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        feats = src.forward_intermediates(x, indices=4,
                                          intermediates_only=True)
    assert_stages_match(model, x, feats)

    official, back = tmp_path / 'official.pth', tmp_path / 'back.safetensors'
    assert convert(path, official) == 0
    assert convert(official, back, '--to', 'timm') == 0
    assert_same_file(load_file(str(back)), load_file(str(path)))


# -- DINOv3, the authors' .pth ------------------------------------------------
class AuthorsDinov3Layout(nn.Module):
    """The module layout of dinov3/models/convnext.py (docs/reference.md
    §8), built from our layers: the official names plus ``norms``, a list
    whose last entry *is* ``norm``, so ``state_dict()`` holds that
    LayerNorm twice (``norm.*`` and ``norms.3.*``), and the authors' hub
    loader reads it back with ``strict=True``."""

    def __init__(self) -> None:
        super().__init__()
        body = ConvNeXt(TINY, layer_scale_init_value=1.0)
        self.downsample_layers, self.stages = (body.downsample_layers,
                                               body.stages)
        self.norm = nn.LayerNorm(DIMS[-1], eps=1e-6)
        self.norms = nn.ModuleList([nn.Identity() for _ in range(3)]
                                   + [self.norm])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
            feats.append(x)
        return feats


def test_dinov3_authors_pth(tmp_path: Path) -> None:
    src = randomize_(AuthorsDinov3Layout(), seed=4).eval()
    raw = src.state_dict()
    assert torch.equal(raw['norms.3.weight'], raw['norm.weight'])
    path = tmp_path / 'dinov3_convnext_tiny_pretrain_lvd1689m-21b726bb.pth'
    torch.save(raw, path)
    model, report = load_ours(TINY, path)
    assert report['format'] == 'dinov3'
    only_dense_norms_missing(report)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert_stages_match(model, x, src(x))

    official, back = tmp_path / 'official.pth', tmp_path / 'back.pth'
    assert convert(path, official) == 0
    assert 'norms.3.weight' not in read_checkpoint(official)
    assert convert(official, back, '--to', 'dinov3') == 0
    assert_same_file(read_checkpoint(back), dict(raw))
    AuthorsDinov3Layout().load_state_dict(read_checkpoint(back), strict=True)

    # the twin names must agree: a file where they differ is refused
    raw = dict(raw, **{'norms.3.weight': raw['norm.weight'] + 1})
    torch.save(raw, path)
    with pytest.raises(ValueError, match=r"'norms\.3\.weight' and "
                       r"'norm\.weight' should hold the same tensor"):
        load_ours(TINY, path)


# -- ConvNeXt-V2 in its four schemas ------------------------------------------
def v2_hf(seed: int) -> tuple[nn.Module, callable]:
    from transformers import ConvNextV2Config, ConvNextV2Model
    src = randomize_(ConvNextV2Model(ConvNextV2Config(
        depths=list(DEPTHS), hidden_sizes=list(DIMS))), seed=seed).eval()

    def stages(x):
        return src(x, output_hidden_states=True).hidden_states[1:]
    return src, stages


def v2_timm(seed: int) -> tuple[nn.Module, callable]:
    from timm.models.convnext import ConvNeXt as TimmConvNeXt
    # Linear pointwise layers, as timm's convnextv2_tiny..huge (atto..nano
    # use 1x1 convolutions: they load, see test_checkpoint.py, but come
    # back from the official layout as Linear weights)
    src = randomize_(TimmConvNeXt(depths=DEPTHS, dims=DIMS, use_grn=True,
                                  ls_init_value=None, conv_mlp=False),
                     seed=seed).eval()
    return src, lambda x: src.forward_intermediates(
        x, indices=4, intermediates_only=True)


def v2_mmpretrain(seed: int) -> tuple[nn.Module, callable]:
    pytest.importorskip('mmpretrain')  # the 'benchmark' extra
    # mmpretrain 1.2.0's BLIP models fail to import under transformers 5;
    # the backbone needs none of them (tools/analysis/benchmark.py does so)
    import mmpretrain.utils.dependency
    mmpretrain.utils.dependency.WITH_MULTIMODAL = False
    from mmpretrain.models.backbones import ConvNeXt as MMConvNeXt
    src = randomize_(MMConvNeXt(
        arch=dict(depths=list(DEPTHS), channels=list(DIMS)), use_grn=True,
        layer_scale_init_value=0., out_indices=(0, 1, 2, 3),
        gap_before_final_norm=False), seed=seed)
    src.eval()  # (its train() returns None)
    return src, src.forward  # its outputs pass through its norm0..3


V2_SOURCES = {
    # schema: (build, how the library writes a file, file name, normed)
    'huggingface': (v2_hf, lambda m, d: m.save_pretrained(d),
                    'model.safetensors', False),
    'timm': (v2_timm, lambda m, d: save_file(m.state_dict(),
                                             str(d / 'model.safetensors')),
             'model.safetensors', False),
    'mmpretrain': (v2_mmpretrain, lambda m, d: torch.save(
        {'state_dict': {f'backbone.{k}': v
                        for k, v in m.state_dict().items()}},
        d / 'mmpretrain.pth'), 'mmpretrain.pth', True),
}


@pytest.mark.parametrize('fmt', ['official', *sorted(V2_SOURCES)])
def test_v2_in_each_schema_loads_with_identical_stages(tmp_path: Path,
                                                       fmt: str) -> None:
    # the official layout from timm's model, through timm's own converter's
    # inverse (checked against timm in test_checkpoint.py)
    build, write, name, normed = V2_SOURCES.get(fmt, V2_SOURCES['timm'])
    src, stages = build(seed=7)
    write(src, tmp_path)
    path = tmp_path / name
    if fmt == 'official':
        official = to_official(read_checkpoint(path))[0]
        path = tmp_path / 'convnextv2_official.pt'
        torch.save({'model': official}, path)
    model, report = load_ours(TINY_V2, path)
    assert report['format'] == fmt
    if fmt == 'mmpretrain':  # its dense norms come with the file
        assert report['missing'] == [] and report['unexpected'] == []
    else:
        only_dense_norms_missing(report)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert_stages_match(model, x, list(stages(x)), normed=normed)

    back = tmp_path / f'back-{name}'
    official = tmp_path / 'via-official.pth'
    assert convert(path, official) == 0
    # a bare ConvNextV2Model has no model prefix (a classifier's would be
    # 'convnextv2.', the default)
    prefix = ['--prefix', ''] if fmt == 'huggingface' else []
    assert convert(official, back, '--to', fmt, *prefix) == 0
    assert_same_file(read_checkpoint(back), read_checkpoint(path))
