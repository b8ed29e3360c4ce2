"""convnext_dense.ops against mmcv's compiled kernels.

The default install has no compiled mmcv, so the references are golden
tensors recorded from mmcv 2.1.0's compiled CPU kernels by
``dev/record_mmcv_goldens.py`` on the cases of
:mod:`convnext_dense.ops.parity` (``tests/data/mmcv_goldens.pt``; its
``environment`` entry says where). Every test here calls ``mmcv.ops`` as mmdet
does, so the stand-in ``mmcv._ext`` is what runs. What may differ between
CPUs, and so how the detector steps are compared: docs/platforms.md.
"""
from __future__ import annotations

import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

import convnext_dense  # noqa: F401  (installs the ops)
import mmcv.ops  # noqa: E402
from convnext_dense.ops import mmcv_ext, mmcv_ops_source, parity

GOLDENS = osp.join(osp.dirname(osp.dirname(__file__)), 'data',
                   'mmcv_goldens.pt')

pytestmark = pytest.mark.skipif(
    mmcv_ops_source() != 'torchvision',
    reason='mmcv has its compiled ops here: the stand-ins are not in use')


@pytest.fixture(scope='module')
def goldens() -> dict:
    return torch.load(GOLDENS, weights_only=True)


def by_name(entries: list[dict]) -> dict[str, dict]:
    return {entry['name']: entry for entry in entries}


def test_goldens_come_from_compiled_mmcv(goldens) -> None:
    assert 'compiled ops' in goldens['environment']
    assert len(goldens['roi_align']) == len(parity.roi_align_cases())
    assert len(goldens['nms']) == len(parity.nms_cases())
    assert len(goldens['soft_nms']) == len(parity.soft_nms_cases())


def _roi_align(case: dict, feat: torch.Tensor):
    feat = feat.detach().requires_grad_()
    out = mmcv.ops.roi_align(feat, case['rois'], case['output_size'],
                             case['spatial_scale'], case['sampling_ratio'],
                             'avg', case['aligned'])
    out.backward(case['grad_output'].to(out.dtype))
    return out.detach(), feat.grad


# layout/dtype of the feature map -> (how to make it, tolerance vs the
# float32 golden: the reduced types round the inputs first)
VARIANTS = {
    'float32': (lambda x: x, 1e-5),
    'channels_last': (
        lambda x: x.contiguous(memory_format=torch.channels_last), 1e-5),
    'float16': (lambda x: x.half(), 1e-2),
    'bfloat16': (lambda x: x.bfloat16(), 6e-2),
}


@pytest.mark.parametrize('variant', VARIANTS)
def test_roi_align_forward_and_backward(goldens, variant) -> None:
    make, tol = VARIANTS[variant]
    golden = by_name(goldens['roi_align'])
    for case in parity.roi_align_cases():
        out, grad = _roi_align(case, make(case['input']))
        want = golden[case['name']]
        assert out.dtype == make(case['input']).dtype
        assert out.shape == want['output'].shape, case['name']
        torch.testing.assert_close(out.float(), want['output'], rtol=0,
                                   atol=tol, msg=case['name'])
        torch.testing.assert_close(grad.float(), want['grad_input'],
                                   rtol=0, atol=tol, msg=case['name'])


def test_nms_keeps_the_same_boxes_in_the_same_order(goldens) -> None:
    golden = by_name(goldens['nms'])
    for case in parity.nms_cases():
        dets, keep = mmcv.ops.nms(case['boxes'], case['scores'],
                                  case['iou_threshold'])
        want = golden[case['name']]
        assert keep.tolist() == want['keep'].tolist(), case['name']
        torch.testing.assert_close(dets, want['dets'], rtol=0, atol=0)
    # the threshold edge keeps both boxes only in float32 arithmetic
    assert len(golden['threshold edge']['keep']) == 2


def test_soft_nms_equals_mmcv(goldens) -> None:
    golden = by_name(goldens['soft_nms'])
    for case in parity.soft_nms_cases():
        dets, keep = mmcv.ops.soft_nms(
            case['boxes'], case['scores'], case['iou_threshold'],
            case['sigma'], case['min_score'], case['method'])
        want = golden[case['name']]
        assert keep.tolist() == want['keep'].tolist(), case['name']
        torch.testing.assert_close(dets, want['dets'], rtol=1e-6,
                                   atol=1e-6)


def _soft_nms_reference(boxes, scores, thr, sigma, min_score, method):
    """mmcv's soft-NMS loop written out element by element in float32: an
    independent check of the vectorised one on more inputs than the
    goldens hold."""
    f = np.float32
    x1, y1, x2, y2 = (boxes[:, k].astype(f).copy() for k in range(4))
    sc, inds = scores.astype(f).copy(), list(range(len(scores)))
    area = (x2 - x1) * (y2 - y1)
    n, i = len(sc), 0
    while i < n:
        top = i + int(np.argmax(sc[i:n]))
        for arr in (x1, y1, x2, y2, sc, area):
            arr[i], arr[top] = arr[top], arr[i]
        inds[i], inds[top] = inds[top], inds[i]
        pos = i + 1
        while pos < n:
            w = max(f(0), min(x2[i], x2[pos]) - max(x1[i], x1[pos]))
            h = max(f(0), min(y2[i], y2[pos]) - max(y1[i], y1[pos]))
            inter = f(w * h)
            ovr = f(inter / f(area[i] + area[pos] - inter))
            weight = {0: f(0) if ovr >= f(thr) else f(1),
                      1: f(1) - ovr if ovr >= f(thr) else f(1),
                      2: f(np.exp(-f(ovr * ovr) / f(sigma)))}[method]
            sc[pos] = f(sc[pos] * weight)
            if sc[pos] < f(min_score):
                for arr in (x1, y1, x2, y2, sc, area):
                    arr[pos] = arr[n - 1]
                inds[pos] = inds[n - 1]
                n -= 1
                pos -= 1
            pos += 1
        i += 1
    return inds[:n], sc[:n]


@pytest.mark.parametrize('method', [0, 1, 2])
def test_soft_nms_against_a_scalar_port(method) -> None:
    rng = np.random.RandomState(method)
    for trial in range(4):
        boxes = np.round(rng.uniform(0, 40, (60, 2)) / 2) * 2
        boxes = np.concatenate([boxes, boxes + rng.randint(2, 20, (60, 2))],
                               1).astype(np.float32)
        scores = (rng.randint(1, 9, 60) / 8).astype(np.float32)  # ties
        dets = torch.empty(60, 5)
        keep = mmcv_ext.softnms(
            torch.from_numpy(boxes), torch.from_numpy(scores), dets,
            iou_threshold=0.3, sigma=0.5, min_score=0.05, method=method,
            offset=0)
        want_keep, want_scores = _soft_nms_reference(
            boxes, scores, 0.3, 0.5, 0.05, method)
        assert keep.tolist() == want_keep, (method, trial)
        np.testing.assert_allclose(dets[:len(keep), 4].numpy(), want_scores,
                                   rtol=1e-6)


@pytest.mark.parametrize('name', sorted(parity.DETECTORS))
def test_training_step_equals_compiled_mmcv(goldens, name) -> None:
    """The whole step in float64, where the CPU's kernel choice (AVX2,
    AVX-512, AMX; 1, 2 or 3 threads) moves every gradient norm by <= 1.2e-15
    relative (measured on AMD EPYC with ONEDNN_MAX_CPU_ISA=SSE41 and
    OMP_NUM_THREADS=1..3), so a tight tolerance holds on every CPU and a
    wrong op stands out by orders of magnitude."""
    want = goldens['detectors_float64'][name]
    got = parity.detector_step(name, torch.float64)
    # same initial weights first: a difference there is not the ops'
    assert got['init'].keys() == want['init'].keys()
    for key, value in want['init'].items():
        assert got['init'][key] == pytest.approx(value, rel=1e-6), key
    assert got['losses'].keys() == want['losses'].keys()
    for key, value in want['losses'].items():
        assert got['losses'][key] == pytest.approx(value, rel=1e-9,
                                                   abs=1e-12), key
    assert got['grads'].keys() == want['grads'].keys()
    assert len(got['grads']) > 100
    for key, value in want['grads'].items():
        assert got['grads'][key] == pytest.approx(value, rel=1e-9,
                                                  abs=1e-12), key


@pytest.mark.parametrize('name', sorted(parity.DETECTORS))
def test_float32_training_losses_equal_compiled_mmcv(goldens, name) -> None:
    """The float32 step as models train: its forward (and so every op's
    forward) gives the losses within 1e-4 relative on every CPU (measured
    spread 4.4e-6 over AVX2/SSE4.1 kernels and 1-3 threads; Intel AMX
    5.1e-7). Its gradients are not compared: float32 backward sums in the
    kernel's order and moves gradient norms by up to 4e-3 between CPUs, the
    float64 step above checks them."""
    want = goldens['detectors'][name]
    got = parity.detector_step(name)
    assert got['losses'].keys() == want['losses'].keys()
    for key, value in want['losses'].items():
        assert got['losses'][key] == pytest.approx(value, rel=1e-4,
                                                   abs=1e-6), key


def test_other_ops_refuse_naming_the_op_and_the_install_option() -> None:
    with pytest.raises(NotImplementedError,
                       match=r"'sigmoid_focal_loss_forward'.*--mmcv-ops"):
        mmcv.ops.sigmoid_focal_loss(torch.rand(2, 3), torch.tensor([0, 1]),
                                    2.0, 0.25)
    feat, rois = torch.rand(1, 2, 8, 8), torch.tensor([[0., 1, 1, 6, 6]])
    with pytest.raises(NotImplementedError, match="pool_mode='max'"):
        mmcv.ops.roi_align(feat, rois, (2, 2), 1.0, 0, 'max', True)
    with pytest.raises(NotImplementedError, match='offset=1'):
        mmcv.ops.nms(rois[:, 1:], torch.ones(1), 0.5, offset=1)


@pytest.mark.slow
def test_any_import_order_works() -> None:
    """A script that imports mmdet's models first, never convnext_dense:
    the start-up hook that tools/install.sh writes serves mmcv._ext."""
    code = ('import mmdet.models, mmcv.ops, sys, torch; '
            'print(type(sys.modules["mmcv._ext"]).__module__); '
            'print(mmcv.ops.nms(torch.tensor([[0., 0, 9, 9], [1, 1, 9, 9]]),'
            ' torch.tensor([.9, .8]), .5)[1].tolist())')
    done = subprocess.run([sys.executable, '-c', code], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ['convnext_dense.ops.mmcv_ext', '[0]']
