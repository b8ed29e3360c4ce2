"""Tests of checkpoint reading, key mapping and loading
(convnext_dense/checkpoint/backbone.py) and of tools/convert_checkpoint.py.

Every supported file layout is synthesised here from a randomised model,
written to disk, and loaded the way configs load it
(``init_cfg=dict(type='Pretrained', checkpoint=PATH)`` + ``init_weights()``);
the loaded model must then compute exactly what the source model computes.
timm's own checkpoint filter and a file written by timm itself check the
mapping table independently.
"""
from __future__ import annotations

import os
import pickle
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.models.convnext import ConvNeXt as TimmConvNeXt
from timm.models.convnext import checkpoint_filter_fn

from convnext_dense.checkpoint.backbone import (FORMATS, convert_checkpoint,
                                                detect_format, from_official,
                                                load_backbone_checkpoint,
                                                read_checkpoint, to_official)
from convnext_dense.models.convnext import ConvNeXt
from helpers.random_weights import randomize_

from models.test_convnext import layer_norm_nchw

REPO = Path(__file__).resolve().parents[2]
ARCHS = ['test', 'v2-test']  # V1 and V2 (GRN, no layer scale)
NUM_CLASSES = 10


# -- helpers ------------------------------------------------------------------
def source_model(arch: str, seed: int = 0) -> ConvNeXt:
    return randomize_(ConvNeXt(arch), seed=seed).eval()


def dense_sd(model: ConvNeXt) -> dict[str, torch.Tensor]:
    """The backbone as a detector stores it: body + norm0..3."""
    return {k: v.clone() for k, v in model.state_dict().items()}


def classifier_sd(model: ConvNeXt, seed: int = 1) -> dict[str, torch.Tensor]:
    """The backbone as an ImageNet classifier stores it: body + norm + head.

    A classifier has no norm0..3; it has the final ``norm`` and ``head``.
    """
    gen = torch.Generator().manual_seed(seed)
    dim = model.dims[-1]
    sd = {k: v.clone() for k, v in model.state_dict().items()
          if not k.startswith('norm')}
    sd['norm.weight'] = 1 + torch.randn(dim, generator=gen)
    sd['norm.bias'] = torch.randn(dim, generator=gen)
    sd['head.weight'] = torch.randn(NUM_CLASSES, dim, generator=gen)
    sd['head.bias'] = torch.randn(NUM_CLASSES, generator=gen)
    return sd


def detector_extras() -> dict[str, torch.Tensor]:
    return {'neck.lateral_convs.0.conv.weight': torch.randn(8, 16, 1, 1),
            'rpn_head.rpn_conv.bias': torch.randn(8),
            'roi_head.bbox_head.0.fc_cls.weight': torch.randn(3, 8)}


def fresh(arch: str, path: str | Path, **cfg) -> ConvNeXt:
    model = ConvNeXt(
        arch, init_cfg=dict(type='Pretrained', checkpoint=str(path), **cfg))
    model.init_weights()
    return model.eval()


def outputs(model: ConvNeXt, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return model(x)


# Each writer turns the source model into one file layout and says whether
# the file carries the dense output norms (norm0..3).
Writer = Callable[[ConvNeXt, Path], bool]


def write_official_imagenet(model: ConvNeXt, path: Path) -> bool:
    torch.save({'model': classifier_sd(model)}, path)
    return False


def write_official_detector(model: ConvNeXt, path: Path) -> bool:
    sd = {f'backbone.{k}': v for k, v in dense_sd(model).items()}
    torch.save({'state_dict': {**sd, **detector_extras()},
                'meta': {'epoch': 36, 'CLASSES': ('a', 'b')}}, path)
    return True


def write_timm(model: ConvNeXt, path: Path) -> bool:
    torch.save(from_official(classifier_sd(model), 'timm'), path)
    return False


def write_timm_safetensors(model: ConvNeXt, path: Path) -> bool:
    sd = from_official(classifier_sd(model), 'timm')
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return False


def write_mmpretrain_classifier(model: ConvNeXt, path: Path) -> bool:
    sd = from_official(classifier_sd(model), 'mmpretrain')
    assert 'backbone.norm3.weight' in sd and 'head.fc.weight' in sd
    torch.save({'state_dict': sd, 'meta': {'epoch': 300}}, path)
    return False


def write_mmdet_with_mmpretrain_backbone(model: ConvNeXt, path: Path) -> bool:
    sd = from_official(dense_sd(model), 'mmpretrain')
    torch.save({'state_dict': {**sd, **detector_extras()}}, path)
    return True


def write_huggingface(model: ConvNeXt, path: Path) -> bool:
    torch.save(from_official(classifier_sd(model), 'huggingface',
                             v2=model.use_grn), path)
    return False


def write_huggingface_safetensors(model: ConvNeXt, path: Path) -> bool:
    sd = from_official(classifier_sd(model), 'huggingface', v2=model.use_grn)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return False


WRITERS: dict[str, tuple[Writer, str, str]] = {
    # case: (writer, file name, detected format)
    'official-imagenet': (write_official_imagenet, 'in1k.pth', 'official'),
    'official-detector': (write_official_detector, 'cascade.pth', 'official'),
    'timm': (write_timm, 'timm.pth', 'timm'),
    'timm-safetensors': (write_timm_safetensors, 'timm.safetensors', 'timm'),
    'mmpretrain-classifier': (write_mmpretrain_classifier, 'mmpre.pth',
                              'mmpretrain'),
    'mmdet-mmpretrain-backbone': (write_mmdet_with_mmpretrain_backbone,
                                  'mmdet.pth', 'mmpretrain'),
    'huggingface': (write_huggingface, 'pytorch_model.bin', 'huggingface'),
    'huggingface-safetensors': (write_huggingface_safetensors,
                                'model.safetensors', 'huggingface'),
}


# -- every format loads to identical outputs ----------------------------------
@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('case', sorted(WRITERS))
def test_every_format_loads_to_identical_outputs(tmp_path: Path, arch: str,
                                                 case: str) -> None:
    writer, filename, fmt = WRITERS[case]
    src = source_model(arch)
    path = tmp_path / filename
    has_dense_norms = writer(src, path)
    if not has_dense_norms:
        # an ImageNet file has no norm0..3: they stay freshly initialised
        for i in range(4):
            getattr(src, f'norm{i}').reset_parameters()

    torch.manual_seed(1)  # the fresh model starts from other weights
    model = ConvNeXt(arch, init_cfg=dict(type='Pretrained',
                                         checkpoint=str(path)))
    x = torch.randn(2, 3, 64, 64)
    before = outputs(model.eval(), x)
    report = load_backbone_checkpoint(model, path)
    assert report['format'] == fmt
    expected_missing = [] if has_dense_norms else sorted(
        f'norm{i}.{p}' for i in range(4) for p in ('weight', 'bias'))
    assert sorted(report['missing']) == expected_missing
    assert report['unexpected'] == []
    # a detector's neck and heads are reported, never mapped
    assert sorted(report['ignored']) == (
        sorted(detector_extras()) if 'detector' in case
        or 'mmdet' in case else [])

    # the way configs load it
    model = fresh(arch, path)
    got, want = outputs(model, x), outputs(src, x)
    for a, b, c in zip(got, want, before):
        assert torch.equal(a, b)
        assert not torch.allclose(c, b)  # loading changed the result
    for key, value in src.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_a_file_written_by_timm_itself(tmp_path: Path) -> None:
    """timm's own convnextv2_atto stores 1x1-conv pointwise weights."""
    ref = randomize_(timm.create_model('convnextv2_atto', pretrained=False),
                     seed=5).eval()
    assert ref.stages[0].blocks[0].mlp.fc1.weight.ndim == 4
    path = tmp_path / 'convnextv2_atto.safetensors'
    save_file(ref.state_dict(), str(path))
    model = fresh('v2-atto', path)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        feats = ref.forward_intermediates(x, indices=4,
                                          intermediates_only=True)
        outs = model(x)
    for i, (out, feat) in enumerate(zip(outs, feats)):
        exp = layer_norm_nchw(feat, getattr(model, f'norm{i}'))
        assert (out - exp).abs().max() <= 1e-5, i


# -- the mapping table --------------------------------------------------------
def assert_same_dict(a: dict, b: dict, ordered: bool = True) -> None:
    # safetensors files list their tensors in their own order
    assert list(a) == list(b) if ordered else sorted(a) == sorted(b)
    for key in a:
        assert a[key].shape == b[key].shape, key
        assert torch.equal(a[key], b[key]), key


# what each schema can spell: (V2's GRN, a classifier's head, norm0..3)
SPELLS = {'official': (True, True, True), 'dinov3': (True, True, True),
          'timm': (True, True, False), 'mmpretrain': (True, True, True),
          'huggingface': (True, True, True),
          'huggingface-dinov3': (False, False, False)}


def test_spells_table_covers_every_format() -> None:
    assert sorted(SPELLS) == sorted(FORMATS)


@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('fmt', FORMATS)
def test_round_trip(arch: str, fmt: str) -> None:
    model = source_model(arch)
    v2 = model.use_grn
    grn, head, dense = SPELLS[fmt]
    sd = classifier_sd(model)
    if v2 and not grn:
        with pytest.raises(KeyError, match=rf"grn\.gamma' has no {fmt}"):
            from_official(sd, fmt)
        return
    if not head:  # a self-supervised backbone: final norm, no classifier
        sd = {k: v for k, v in sd.items() if not k.startswith('head.')}
        with pytest.raises(KeyError, match=f"'head.weight' has no {fmt}"):
            from_official(classifier_sd(model), fmt)
    foreign = from_official(sd, fmt, v2=v2)
    if fmt == 'dinov3':  # official names, and the final norm twice
        assert sorted(set(foreign) - set(sd)) == ['norms.3.bias',
                                                  'norms.3.weight']
        assert foreign['norms.3.weight'] is foreign['norm.weight']
    if fmt not in ('official', 'dinov3'):
        assert not set(foreign) & set(sd)  # every key renamed
    if fmt != 'official':
        assert detect_format(foreign) == fmt
    back, unknown = to_official(foreign, fmt)
    assert unknown == []
    assert_same_dict(back, sd)
    assert to_official(foreign)[0].keys() == sd.keys()  # fmt detected

    if dense:
        sd = dense_sd(model)
        back, unknown = to_official(from_official(sd, fmt, v2=v2), fmt)
        assert unknown == []
        assert_same_dict(back, sd)
    else:
        with pytest.raises(KeyError, match=f"'norm0.weight' has no {fmt}"):
            from_official(dense_sd(model), fmt)


def test_grn_shapes_per_schema() -> None:
    sd = classifier_sd(source_model('v2-test'))
    key = 'stages.1.0.grn.gamma'
    assert sd[key].shape == (1, 1, 1, 128)
    spelled = {
        'official': key, 'timm': 'stages.1.blocks.0.mlp.grn.weight',
        'mmpretrain': 'backbone.stages.1.0.grn.gamma',
        'huggingface': 'convnextv2.encoder.stages.1.layers.0.grn.weight'}
    shapes = {'official': (1, 1, 1, 128), 'timm': (128, ),
              'mmpretrain': (128, ), 'huggingface': (1, 1, 1, 128)}
    for fmt in spelled:
        foreign = from_official(sd, fmt, v2=True)
        assert foreign[spelled[fmt]].shape == shapes[fmt], fmt


def test_two_keys_with_one_spelling_raise() -> None:
    sd = dense_sd(source_model('test'))
    sd.update({'norm.weight': sd['norm3.weight'],
               'norm.bias': sd['norm3.bias']})
    with pytest.raises(ValueError, match="would both be written as "
                       "'backbone.norm3.weight'"):
        from_official(sd, 'mmpretrain')


@pytest.mark.parametrize('arch', ARCHS)
def test_timm_checkpoint_filter_agrees_with_our_table(arch: str) -> None:
    """timm's converter of official files is an independent table."""
    model = source_model(arch)
    sd = classifier_sd(model)
    v2 = model.use_grn
    timm_model = TimmConvNeXt(
        depths=model.depths, dims=model.dims, num_classes=NUM_CLASSES,
        use_grn=v2, ls_init_value=None if v2 else 1e-6)
    theirs = checkpoint_filter_fn({'model': sd}, timm_model)
    ours = from_official(sd, 'timm', v2=v2)
    assert sorted(theirs) == sorted(ours)
    for key in ours:
        assert torch.equal(theirs[key], ours[key]), key
    # and it is a complete timm state dict
    timm_model.load_state_dict(ours, strict=True)


# -- errors -------------------------------------------------------------------
def test_foreign_checkpoint_is_refused(tmp_path: Path) -> None:
    resnet = {'conv1.weight': torch.randn(4, 3, 7, 7),
              'bn1.weight': torch.ones(4), 'bn1.running_mean': torch.zeros(4),
              'layer1.0.conv1.weight': torch.randn(4, 4, 3, 3),
              'fc.weight': torch.randn(10, 4)}
    for name, obj in (('resnet.pth', resnet),
                      ('faster_rcnn_r50.pth', {'state_dict': {
                          f'backbone.{k}': v for k, v in resnet.items()}})):
        path = tmp_path / name
        torch.save(obj, path)
        with pytest.raises(ValueError,
                           match=f'{name}: not a ConvNeXt checkpoint'):
            fresh('test', path)


def test_wrong_arch_is_refused(tmp_path: Path) -> None:
    """Stand-ins for T into B (wider), T into S and S into T (deeper)."""
    path = tmp_path / 'test.pth'
    torch.save({'model': classifier_sd(source_model('test'))}, path)
    wider = dict(depths=(1, 1, 1, 1), dims=(24, 48, 96, 192))
    with pytest.raises(ValueError, match=r'test\.pth \(official\) does not '
                       r'fit .* shape mismatches, e\.g\. downsample_layers'
                       r'\.0\.0\.weight: checkpoint \(16, 3, 4, 4\) vs model '
                       r'\(24, 3, 4, 4\)'):
        fresh(wider, path)
    deeper = dict(depths=(1, 1, 3, 1), dims=(16, 32, 64, 128))
    with pytest.raises(ValueError,
                       match=r"leave 18 of 78 backbone tensors random.*"
                       r"'stages\.2\.1\.dwconv\.weight'.*allow_partial"):
        fresh(deeper, path)
    deeper_path = tmp_path / 'deeper.pth'
    torch.save({'model': classifier_sd(source_model(deeper))},
               deeper_path)
    with pytest.raises(ValueError, match=r"deeper\.pth \(official\) has 18 "
                       r"backbone keys this ConvNeXt lacks.*stages\.2\.1\."):
        fresh('test', deeper_path)


def test_v1_checkpoint_into_v2_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / 'v1.pth'
    torch.save({'model': classifier_sd(source_model('test'))}, path)
    with pytest.raises(ValueError, match=r'grn\.gamma'):
        fresh('v2-test', path)


def test_missing_keys_raise_unless_allow_partial(tmp_path: Path) -> None:
    src = source_model('test')
    sd = classifier_sd(src)
    dropped = [k for k in sd if k.startswith('stages.1.')]
    for key in dropped:
        del sd[key]
    path = tmp_path / 'partial.pth'
    torch.save({'model': sd}, path)
    with pytest.raises(ValueError, match=r"partial\.pth \(official\) would "
                       rf"leave {len(dropped)} of \d+ backbone tensors random"
                       r".*'stages\.1\.0\.dwconv\.weight'"):
        fresh('test', path)

    torch.manual_seed(3)
    init = ConvNeXt('test').state_dict()
    torch.manual_seed(3)
    model = fresh('test', path, allow_partial=True)
    for key, value in model.state_dict().items():
        if key in dropped or key.startswith('norm'):
            assert torch.equal(value, init[key]), key  # left as it was
        else:
            assert torch.equal(value, src.state_dict()[key]), key


def test_corrupt_and_truncated_files(tmp_path: Path) -> None:
    sd = classifier_sd(source_model('test'))
    good = tmp_path / 'good.pth'
    torch.save({'model': sd}, good)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[:good.stat().st_size // 2])
    garbage = tmp_path / 'garbage.pth'
    garbage.write_bytes(b'\0' + os.urandom(4096))  # no zip, no pickle
    good_st = tmp_path / 'good.safetensors'
    save_file(sd, str(good_st))
    truncated_st = tmp_path / 'truncated.safetensors'
    truncated_st.write_bytes(good_st.read_bytes()[:-100])
    not_tensors = tmp_path / 'args.pth'
    torch.save({'model': {'lr': 0.1, 'epochs': 300}}, not_tensors)
    # the reader's own words for each (tests/checkpoint/test_errors)
    for path, what in ((truncated, 'is not a complete checkpoint: '
                        'truncated'),
                       (garbage, 'is not a checkpoint: its bytes are no '
                        'checkpoint format'),
                       (truncated_st, 'is not a readable safetensors file')):
        with pytest.raises(ValueError, match=f'^{path} {what}'):
            fresh('test', path)
    with pytest.raises(ValueError, match='args.pth does not hold a state '
                       'dict of tensors'):
        fresh('test', not_tensors)
    # control: the intact files load
    fresh('test', good)
    fresh('test', good_st)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / 'nowhere' / 'convnext.pth'
    with pytest.raises(FileNotFoundError, match=f'not found: {path}'):
        fresh('test', path)


class _RunsCode:
    """A pickle payload: unpickling runs a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command, )


@pytest.mark.filterwarnings('ignore:Detected pickle protocol')
@pytest.mark.parametrize('writer', ['torch.save', 'pickle'])
def test_pickle_that_runs_code_is_refused(tmp_path: Path,
                                          writer: str) -> None:
    def write(path: Path, marker: Path) -> None:
        payload = {'model': {'stages.0.0.dwconv.weight': torch.zeros(1)},
                   'args': _RunsCode(f'touch {marker}')}
        if writer == 'torch.save':
            torch.save(payload, path)
        else:
            with open(path, 'wb') as file:
                pickle.dump(payload, file)

    # control: an unrestricted load really does run the payload
    control, control_marker = tmp_path / 'control.pth', tmp_path / 'ran'
    write(control, control_marker)
    if writer == 'torch.save':
        torch.load(control, weights_only=False)
    else:
        with open(control, 'rb') as file:
            pickle.load(file)
    assert control_marker.exists()

    path, marker = tmp_path / 'evil.pth', tmp_path / 'pwned'
    write(path, marker)
    with pytest.raises(ValueError, match=r'evil\.pth contains objects that '
                       'are not allowed.*would run code is refused'):
        fresh('test', path)
    with pytest.raises(ValueError):
        read_checkpoint(path)
    assert not marker.exists()


# -- converter ----------------------------------------------------------------
@pytest.mark.parametrize('arch', ARCHS)
@pytest.mark.parametrize('fmt', FORMATS)
def test_convert_checkpoint_to_each_format(tmp_path: Path, arch: str,
                                           fmt: str) -> None:
    src_model = source_model(arch)
    grn, head, _ = SPELLS[fmt]
    sd = classifier_sd(src_model)
    if not head:
        sd = {k: v for k, v in sd.items() if not k.startswith('head.')}
    # (mmpretrain spells a headless final norm as norm3: timm then)
    src_fmt = 'mmpretrain' if head else 'timm'
    src = tmp_path / 'src.pth'
    torch.save(from_official(sd, src_fmt), src)
    dst = tmp_path / f'out-{fmt}.pth'
    if src_model.use_grn and not grn:
        with pytest.raises(ValueError, match=rf'cannot be written as {fmt}: '
                           r"'stages\.0\.0\.grn\.gamma' has no"):
            convert_checkpoint(src, dst, fmt)
        assert not dst.exists()
        return
    summary = convert_checkpoint(src, dst, fmt)
    assert summary['source_format'] == src_fmt
    # DINOv3's own files hold the final norm twice
    assert summary['tensors'] == len(sd) + 2 * (fmt == 'dinov3')
    assert summary['dropped'] == []
    raw = torch.load(dst, weights_only=True)
    wrapper = {'official': 'model', 'mmpretrain': 'state_dict'}.get(fmt)
    if wrapper:
        assert list(raw) == [wrapper]
        raw = raw[wrapper]
    assert_same_dict(raw, from_official(sd, fmt, v2=src_model.use_grn))
    # and back to the official layout, through a safetensors file
    back = tmp_path / 'back.safetensors'
    convert_checkpoint(dst, back, 'official')
    assert_same_dict(read_checkpoint(back), sd, ordered=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ['src.pth', dst.name, 'back.safetensors'])  # no temporary left


def test_convert_refuses_what_it_cannot_write(tmp_path: Path) -> None:
    src = tmp_path / 'detector.pth'
    write_official_detector(source_model('test'), src)
    dst = tmp_path / 'timm.pth'
    with pytest.raises(ValueError, match="cannot be written as timm: "
                       "'norm0.weight' has no timm spelling"):
        convert_checkpoint(src, dst, 'timm')
    assert sorted(p.name for p in tmp_path.iterdir()) == ['detector.pth']
    # to the official layout it keeps norm0..3 and drops neck and heads
    summary = convert_checkpoint(src, tmp_path / 'backbone.pth')
    assert sorted(summary['dropped']) == sorted(detector_extras())


@pytest.mark.slow
def test_convert_cli(tmp_path: Path,
                     capsys: pytest.CaptureFixture) -> None:
    src_model = source_model('v2-test')
    sd = classifier_sd(src_model)
    src, dst = tmp_path / 'timm.pth', tmp_path / 'hf.bin'
    torch.save(from_official(sd, 'timm'), src)
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS='1')

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(REPO / 'tools' / 'convert_checkpoint.py'),
             *map(str, args)], capture_output=True, text=True, env=env,
            cwd=tmp_path, timeout=120)

    done = cli(src, dst, '--to', 'huggingface')
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f'{src} (timm) -> {dst} (huggingface): {len(sd)} tensors written, '
        '0 non-backbone keys dropped']
    written = read_checkpoint(dst)
    assert next(iter(written)).startswith('convnextv2.')  # V2 inferred
    assert_same_dict(written, from_official(sd, 'huggingface', v2=True))

    # refuses to overwrite; --force overwrites (in-process: one interpreter
    # start is enough to test the script's wiring)
    main = runpy.run_path(str(REPO / 'tools' / 'convert_checkpoint.py'),
                          run_name='convert_checkpoint')['main']
    dst.write_bytes(b'keep me')
    assert main([str(src), str(dst), '--to', 'huggingface']) == 1
    assert f'{dst} exists' in capsys.readouterr().err
    assert dst.read_bytes() == b'keep me'
    assert main([str(src), str(dst), '--to', 'huggingface', '--force']) == 0
    assert_same_dict(read_checkpoint(dst), written)
    # the Hugging Face prefix follows the weights unless --v2 forces it
    v1_src = tmp_path / 'v1.pth'
    torch.save(from_official(classifier_sd(source_model('test')), 'timm'),
               v1_src)
    for flags, prefix in (((), 'convnext.'), (('--v2', ), 'convnextv2.')):
        out = tmp_path / f'v1-hf{len(flags)}.bin'
        assert main([str(v1_src), str(out), '--to', 'huggingface',
                     *flags]) == 0
        assert all(k.startswith((prefix, 'classifier.'))
                   for k in read_checkpoint(out))
