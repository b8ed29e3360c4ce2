"""The torchvision stand-ins for mmcv's ops against mmcv's own CPU kernels.

tools/analysis/mmcv_ext_torchvision.py lets the benchmark run the detector
on a GPU machine where mmcv-lite is all that can be installed. Its numbers
mean something only if the stand-ins compute what mmcv computes: op by op
here, and for a whole Cascade Mask R-CNN training step in a process that
sees mmcv without its compiled extension (a copy of mmcv's Python files,
which is what mmcv-lite 2.1.0 is).
"""
from __future__ import annotations

import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest
import torch

pytest.importorskip('mmdet')
from mmcv.utils import ext_loader  # noqa: E402

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO_ROOT, 'tools', 'analysis'))
import mmcv_ext_torchvision as standin  # noqa: E402

mmcv_ext = ext_loader.load_ext(
    '_ext', ['roi_align_forward', 'roi_align_backward', 'nms'])


def random_rois(generator: torch.Generator, count: int, batch: int,
                size: float) -> torch.Tensor:
    """(count, 5) RoIs in image pixels, some reaching past the border."""
    corners = torch.rand(count, 2, 2, generator=generator) * size * 1.2 - 8
    x1y1 = corners.min(dim=1).values
    x2y2 = corners.max(dim=1).values + 1
    index = torch.randint(batch, (count, 1), generator=generator).float()
    return torch.cat([index, x1y1, x2y2], dim=1)


@pytest.mark.parametrize('sampling_ratio', [0, 2])
@pytest.mark.parametrize('aligned', [True, False])
def test_roi_align_matches_mmcv(sampling_ratio: int, aligned: bool) -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 8, 20, 24, generator=generator)
    rois = random_rois(generator, 40, batch=2, size=96)
    kwargs = dict(aligned_height=7, aligned_width=7, spatial_scale=0.25,
                  sampling_ratio=sampling_ratio, pool_mode=1,
                  aligned=aligned)
    empty = features.new_zeros(0)
    grad_out = torch.randn(40, 8, 7, 7, generator=generator)
    results = []
    for ext in (mmcv_ext, standin):
        out = features.new_zeros(40, 8, 7, 7)
        ext.roi_align_forward(features, rois, out, empty, empty, **kwargs)
        grad_in = torch.zeros_like(features)
        ext.roi_align_backward(grad_out, rois, empty, empty, grad_in,
                               **kwargs)
        results.append((out, grad_in))
    (expected_out, expected_grad), (out, grad) = results
    assert expected_out.abs().sum() > 0 and expected_grad.abs().sum() > 0
    torch.testing.assert_close(out, expected_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('iou_threshold', [0.3, 0.7])
def test_nms_matches_mmcv(iou_threshold: float) -> None:
    generator = torch.Generator().manual_seed(1)
    boxes = random_rois(generator, 300, batch=1, size=64)[:, 1:]
    scores = torch.rand(300, generator=generator)
    expected = mmcv_ext.nms(boxes, scores, iou_threshold=iou_threshold,
                            offset=0)
    kept = standin.nms(boxes, scores, iou_threshold=iou_threshold, offset=0)
    assert 0 < len(kept) < 300
    assert kept.tolist() == expected.tolist()


def test_what_it_cannot_do_is_refused() -> None:
    features = torch.zeros(1, 1, 4, 4)
    rois = torch.tensor([[0., 0., 0., 2., 2.]])
    out = torch.zeros(1, 1, 2, 2)
    with pytest.raises(NotImplementedError, match='average pooling'):
        standin.roi_align_forward(
            features, rois, out, out, out, aligned_height=2,
            aligned_width=2, spatial_scale=1., sampling_ratio=0,
            pool_mode=0, aligned=True)
    with pytest.raises(NotImplementedError, match='offset 0'):
        standin.nms(rois[:, 1:], torch.ones(1), iou_threshold=.5, offset=1)
    ext = standin._Extension('mmcv._ext')
    assert hasattr(ext, 'deform_conv_forward')  # what load_ext asks
    with pytest.raises(NotImplementedError, match="'deform_conv_forward'"):
        ext.deform_conv_forward()


def test_install_refuses_a_compiled_mmcv() -> None:
    # this process imported mmcv's compiled extension above
    with pytest.raises(RuntimeError, match='compiled ops'):
        standin.install()


STEP = r'''
import json, sys
import torch
sys.path[:0] = [{analysis!r}, {repo!r}]
if {lite}:
    import mmcv_ext_torchvision
    mmcv_ext_torchvision.install()
import mmcv.ops
import benchmark
torch.set_num_threads(1)
torch.manual_seed(0)
model = benchmark.build_detector('ours', 'test', rois=16)
batch = benchmark.detector_batch((2, 96, 96))
torch.manual_seed(1)
data = model.data_preprocessor(batch, True)
losses = model(**data, mode='loss')
total, log = model.parse_losses(losses)
total.backward()
grads = {{name: p.grad.norm().item() for name, p in model.named_parameters()
          if name in ('backbone.downsample_layers.0.0.weight',
                      'roi_head.bbox_head.0.shared_convs.0.conv.weight',
                      'roi_head.mask_head.0.convs.0.conv.weight')}}
print(json.dumps(dict(
    ext=type(sys.modules['mmcv._ext']).__name__,
    losses={{k: v.item() for k, v in log.items()}}, grads=grads)))
'''


def run_step(tmp_path, lite: bool) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS='1')
    if lite:
        # mmcv's Python files without its compiled extension: mmcv-lite
        import mmcv
        shutil.copytree(
            osp.dirname(mmcv.__file__), tmp_path / 'lite' / 'mmcv',
            ignore=shutil.ignore_patterns('_ext*', 'csrc', '__pycache__'))
        env['PYTHONPATH'] = str(tmp_path / 'lite')
    code = STEP.format(analysis=osp.join(REPO_ROOT, 'tools', 'analysis'),
                       repo=REPO_ROOT, lite=lite)
    done = subprocess.run([sys.executable, '-c', code], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_cascade_training_step_is_the_same_on_the_standins(tmp_path) -> None:
    compiled = run_step(tmp_path, lite=False)
    lite = run_step(tmp_path, lite=True)
    assert compiled['ext'] == 'module' and lite['ext'] == '_Extension'
    assert set(lite['losses']) == set(compiled['losses'])
    assert any(k.startswith('s2.loss_mask') for k in lite['losses'])
    for key, value in compiled['losses'].items():
        assert lite['losses'][key] == pytest.approx(value, rel=1e-4,
                                                    abs=1e-6), key
    assert len(compiled['grads']) == 3
    for key, value in compiled['grads'].items():
        assert value > 0
        assert lite['grads'][key] == pytest.approx(value, rel=1e-4), key
