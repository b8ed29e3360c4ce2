"""Record the outputs of mmcv's compiled ops as golden tensors.

Run in an environment where mmcv has its compiled ops (``bash
tools/install.sh --mmcv-ops``, or any mmcv 2.1.0 built with
``MMCV_WITH_OPS=1``)::

    python dev/record_mmcv_goldens.py tests/data/mmcv_goldens.pt

It runs the cases of :mod:`convnext_dense.ops.parity` through ``mmcv.ops``
(RoIAlign forward and backward, NMS, soft-NMS) and a training step of the
small Cascade Mask R-CNN and Mask R-CNN (in float32 and in float64), and
saves what mmcv's kernels returned. ``tests/ops/test_mmcv_ext.py`` compares
convnext_dense.ops with this file on the default install, which has no
compiled mmcv.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('out', help='the .pt file to write')
    args = parser.parse_args(argv)

    import mmcv
    import mmcv.ops
    from convnext_dense.ops import mmcv_ops_source
    from convnext_dense.ops import parity
    if mmcv_ops_source() != 'mmcv':
        sys.exit('record_mmcv_goldens: this mmcv has no compiled ops '
                 '(install with: bash tools/install.sh --mmcv-ops)')
    torch.set_num_threads(1)

    roi_align = []
    for case in parity.roi_align_cases():
        feat = case['input'].clone().requires_grad_()
        out = mmcv.ops.roi_align(feat, case['rois'], case['output_size'],
                                 case['spatial_scale'],
                                 case['sampling_ratio'], 'avg',
                                 case['aligned'])
        out.backward(case['grad_output'])
        roi_align.append(dict(name=case['name'], output=out.detach(),
                              grad_input=feat.grad))
    nms = []
    for case in parity.nms_cases():
        dets, keep = mmcv.ops.nms(case['boxes'], case['scores'],
                                  case['iou_threshold'])
        nms.append(dict(name=case['name'], keep=keep, dets=dets))
    soft_nms = []
    for case in parity.soft_nms_cases():
        dets, keep = mmcv.ops.soft_nms(
            case['boxes'], case['scores'], case['iou_threshold'],
            case['sigma'], case['min_score'], case['method'])
        soft_nms.append(dict(name=case['name'], keep=keep, dets=dets))
    detectors = {name: parity.detector_step(name)
                 for name in parity.DETECTORS}
    detectors_float64 = {name: parity.detector_step(name, torch.float64)
                         for name in parity.DETECTORS}
    torch.save(dict(
        environment=(f'python {platform.python_version()}, torch '
                     f'{torch.__version__}, mmcv {mmcv.__version__} '
                     '(compiled ops, CPU kernels)'),
        roi_align=roi_align, nms=nms, soft_nms=soft_nms,
        detectors=detectors, detectors_float64=detectors_float64),
        args.out)
    print(f'wrote {args.out}: {len(roi_align)} RoIAlign, {len(nms)} NMS, '
          f'{len(soft_nms)} soft-NMS cases, {len(detectors)} detector steps '
          'in float32 and float64')


if __name__ == '__main__':
    main()
