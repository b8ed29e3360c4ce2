"""Modules that hold what an exported ONNX graph computes.

Each wraps a built (and loaded) mmengine model and has a tensor-only
``forward``, so that tracing it records the whole computation:

- :class:`FeatureGraph`: backbone, or backbone + neck; a normalised
  (N, 3, H, W) batch in, the multi-scale feature maps out.
- :class:`SegmentorGraph`: an mmseg ``EncoderDecoder`` in whole-image mode;
  raw BGR pixels (N, 3, H, W) in, class logits at the input size out.
- :class:`DetectorGraph`: mmdet Mask R-CNN / Cascade Mask R-CNN end to
  end; one resized BGR image (1, 3, H, W) and the original (height, width)
  in; boxes (K, 4) in original pixels, scores (K,), labels (K,) and masks
  (K, H0, W0) out, as mmdet's ``predict(rescale=True)`` on the CPU.

:func:`check_detector` and :func:`check_segmentor` name what a graph does
not cover, before anything is traced.
"""
from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from . import graph_ops


class UnsupportedModelError(ValueError):
    """The model (or one of its parts or settings) cannot be exported."""


class _Normalize(nn.Module):
    """The data preprocessor's arithmetic: BGR -> RGB, mean/std."""

    def __init__(self, preprocessor: nn.Module) -> None:
        super().__init__()
        # mmengine's (and mmdet's) attribute, mmseg's
        self.flip = bool(getattr(preprocessor, '_channel_conversion', False)
                         or getattr(preprocessor, 'channel_conversion',
                                    False))
        enabled = getattr(preprocessor, '_enable_normalize', False)
        mean = preprocessor.mean.detach().clone() if enabled else \
            torch.zeros(3, 1, 1)
        std = preprocessor.std.detach().clone() if enabled else \
            torch.ones(3, 1, 1)
        self.register_buffer('mean', mean.view(1, -1, 1, 1))
        self.register_buffer('std', std.view(1, -1, 1, 1))

    def forward(self, image: Tensor) -> Tensor:
        image = image.to(torch.float32)
        if self.flip:
            image = image.flip(1)
        return (image - self.mean) / self.std


class FeatureGraph(nn.Module):
    """Backbone (and neck, or a Mask2Former head's pixel decoder): (N, 3, H,
    W) normalised -> tuple of maps."""

    def __init__(self, backbone: nn.Module, neck: nn.Module | None = None
                 ) -> None:
        super().__init__()
        self.backbone, self.neck = backbone, neck

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        feats = self.backbone(image)
        if self.neck is None:
            return feats
        # a Mask2Former pixel decoder gives (mask features, [3 levels])
        return tuple(x for out in self.neck(feats) for x in (
            out if isinstance(out, (list, tuple)) else [out]))


class HalfGraph(nn.Module):
    """A feature graph computed in float16 between float32 inputs and
    outputs: a Cast to float16 after the input, one to float32 before each
    output, a float16 copy of the weights in between (the model passed in is
    not changed).

    Where the backbone needs float32 it keeps it in the graph: GRN's
    spatial L2 norm and channel mean (a Cast to float32 before
    ``ReduceL2``; :meth:`convnext_dense.models.layers.GRN._forward_onnx`)
    and LayerNorm's statistics (opset-17 ``LayerNormalization``, whose
    ``stash_type`` defaults to float32).
    """

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        self.graph = copy.deepcopy(graph).half()

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        outputs = self.graph(*(x.half() for x in inputs))
        return tuple(x.float() for x in outputs)


def check_segmentor(model: nn.Module) -> None:
    """Refuse a segmentor the whole-image graph would not reproduce."""
    name = type(model).__name__
    if name != 'EncoderDecoder':
        raise UnsupportedModelError(
            f'segmentor {name}: only EncoderDecoder exports (a cascade '
            'decoder needs its first head\'s output in the graph)')
    test_cfg = model.data_preprocessor.test_cfg or {}
    if test_cfg.get('size'):
        raise UnsupportedModelError(
            'data_preprocessor.test_cfg.size pads test images to a fixed '
            'size; the graph takes images of any size')
    mode = (getattr(model, 'test_cfg', None) or {}).get('mode', 'whole')
    if test_cfg.get('size_divisor') and mode != 'whole':
        raise UnsupportedModelError(
            'data_preprocessor.test_cfg.size_divisor pads the whole image '
            f"before the {mode!r} windows; the graph pads only in 'whole' "
            'mode')


class SegmentorGraph(nn.Module):
    """mmseg EncoderDecoder, whole image: (N, 3, H, W) BGR -> logits
    (N, classes, H, W).

    Sliding-window inference is left to the runtime
    (:class:`convnext_dense.deploy.runtime.OnnxSegmentor`): it runs this
    graph on each crop and averages, as mmseg's ``slide_inference`` does.
    A Mask2Former head's class and mask predictions of its last layer are
    combined as mmseg's ``Mask2FormerHead.predict`` does. A preprocessor
    that pads test images to a multiple of ``size_divisor`` (bottom and
    right, with zeros after normalising) is reproduced in the graph, and
    the logits are cropped back, as mmseg's ``postprocess_result`` does.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        check_segmentor(model)
        self.normalize = _Normalize(model.data_preprocessor)
        test_cfg = model.data_preprocessor.test_cfg or {}
        self.size_divisor = int(test_cfg.get('size_divisor') or 1)
        # a copy: UPerHead's pyramid pooling (nn.AdaptiveAvgPool2d) is
        # swapped for an exportable one, leaving the caller's model as it was
        self.model = copy.deepcopy(model)
        graph_ops.replace_adaptive_pools(self.model)
        self.query_head = hasattr(model.decode_head, 'transformer_decoder')

    def forward(self, image: Tensor) -> Tensor:
        x = self.normalize(image)
        height, width = _size(x, 2), _size(x, 3)
        if self.size_divisor > 1:
            # pad by divisor - 1, then keep the rounded-up size: the slice
            # ends are traced from the input's shape
            d = self.size_divisor
            x = F.pad(x, (0, d - 1, 0, d - 1))
            x = x[:, :, :(height + d - 1) // d * d, :(width + d - 1) // d * d]
        feats = self.model.extract_feat(x)
        head = self.model.decode_head
        if self.query_head:
            # (N, Q, classes + 1), (N, Q, h, w) of the last decoder layer
            cls_scores, mask_preds = (out[-1] for out in head(feats, []))
            masks = F.interpolate(mask_preds, size=x.shape[2:],
                                  mode='bilinear', align_corners=False)
            scores = F.softmax(cls_scores, dim=-1)[..., :-1]  # no "no object"
            logits = torch.einsum('nqc,nqhw->nchw', scores, masks.sigmoid())
        else:
            logits = F.interpolate(head(feats), size=x.shape[2:],
                                   mode='bilinear',
                                   align_corners=head.align_corners)
        return logits[:, :, :height, :width]


def _size(x: Tensor, dim: int) -> Tensor:
    """``x.shape[dim]`` as a 0-dim int64 tensor, which a tracer records
    (``torch.tensor(x.shape[dim])`` would freeze it into a constant)."""
    return torch._shape_as_tensor(x)[dim]


def _type(obj) -> str:
    return type(obj).__name__


def check_detector(model: nn.Module) -> None:
    """Refuse a detector :class:`DetectorGraph` does not reproduce,
    naming every part that is not covered."""
    problems = []
    if any(cls.__name__ == 'DINO' for cls in type(model).__mro__):
        raise UnsupportedModelError(
            f'detector {type(model).__name__}: DINO does not export end to '
            'end: traced with its deformable attention as grid_sample '
            '(opset 17), it runs in onnxruntime but its scores differ from '
            "mmdet's by up to 1e-2 (a tiny random DINO, 64x96 input); "
            "export part='neck' (backbone + ChannelMapper)")
    if not all(hasattr(model, a) for a in ('rpn_head', 'roi_head')):
        raise UnsupportedModelError(
            f'detector {type(model).__name__}: only two-stage detectors '
            '(an RPN and RoI heads: Mask R-CNN, Cascade Mask R-CNN) export')
    rpn, roi = model.rpn_head, model.roi_head
    if _type(rpn) != 'RPNHead' or not rpn.use_sigmoid_cls:
        problems.append(f'rpn_head {_type(rpn)} (RPNHead with sigmoid '
                        'scores only)')
    if _type(roi) not in ('StandardRoIHead', 'CascadeRoIHead'):
        problems.append(f'roi_head {_type(roi)}')
    heads = list(roi.bbox_head) if isinstance(roi.bbox_head,
                                              nn.ModuleList) else \
        [roi.bbox_head]
    coders = [rpn.bbox_coder] + [h.bbox_coder for h in heads]
    for coder in coders:
        if _type(coder) != 'DeltaXYWHBBoxCoder' or coder.add_ctr_clamp \
                or not coder.clip_border:
            problems.append(f'box coder {_type(coder)} (DeltaXYWHBBoxCoder '
                            'with clip_border and no centre clamp only)')
            break
    for head in heads:
        if head.custom_cls_channels or head.custom_activation:
            problems.append(f'bbox head {_type(head)} with a custom '
                            'classifier activation')
    extractors = [roi.bbox_roi_extractor]
    if getattr(roi, 'with_mask', False):
        extractors += [roi.mask_roi_extractor]
        masks = list(roi.mask_head) if isinstance(roi.mask_head,
                                                  nn.ModuleList) else \
            [roi.mask_head]
        for head in masks:
            if _type(head) != 'FCNMaskHead':
                problems.append(f'mask head {_type(head)} (FCNMaskHead '
                                'only)')
    for ext in extractors:
        ext = ext[0] if isinstance(ext, nn.ModuleList) else ext
        if _type(ext) != 'SingleRoIExtractor':
            problems.append(f'RoI extractor {_type(ext)}')
        elif any(getattr(layer, 'pool_mode', 'avg') != 'avg'
                 for layer in ext.roi_layers):
            problems.append('RoIAlign with pool_mode max (ONNX RoiAlign '
                            'max mode differs from mmcv\'s)')
    cfg = model.test_cfg
    for stage, nms in (('rpn', cfg.rpn.nms), ('rcnn', cfg.rcnn.nms)):
        if nms.get('type', 'nms') != 'nms':
            problems.append(f'test_cfg.{stage}.nms type {nms["type"]!r} '
                            '(plain NMS only; ONNX has no soft-NMS)')
    if getattr(roi, 'with_mask', False) and \
            cfg.rcnn.get('mask_thr_binary', 0.5) < 0:
        problems.append('mask_thr_binary < 0 (soft masks)')
    if problems:
        raise UnsupportedModelError(
            f'cannot export {type(model).__name__}: ' + '; '.join(problems))


class DetectorGraph(nn.Module):
    """Mask R-CNN / Cascade Mask R-CNN test path as one graph.

    Inputs: ``image`` (1, 3, H, W) float BGR pixels of the image after the
    test pipeline's resize (the runtime resizes, with OpenCV, as mmdet's
    pipeline does), and ``ori_hw`` (2,) int64, the original height and
    width. Outputs: ``boxes`` (K, 4), ``scores`` (K,), ``labels`` (K,)
    int64, ``masks`` (K, H0, W0) bool, sorted by descending score, K <=
    ``test_cfg.rcnn.max_per_img``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        check_detector(model)
        self.model = model
        self.normalize = _Normalize(model.data_preprocessor)
        self.divisor = int(model.data_preprocessor.pad_size_divisor)
        self.pad_value = float(model.data_preprocessor.pad_value)
        roi = model.roi_head
        self.cascade = isinstance(roi.bbox_head, nn.ModuleList)
        self.with_mask = bool(getattr(roi, 'with_mask', False))

    # -- pieces ------------------------------------------------------------
    def _pad(self, x: Tensor) -> Tensor:
        """Pad bottom/right to a multiple of the divisor (after
        normalisation, as mmengine's ``stack_batch`` does)."""
        d = self.divisor
        h, w = x.shape[2], x.shape[3]
        padded = x.new_full((1, x.shape[1], (h + d - 1) // d * d,
                             (w + d - 1) // d * d), self.pad_value)
        padded[:, :, :h, :w] = x
        return padded

    def _proposals(self, feats, img_hw) -> Tensor:
        """RPN: (P, 4) proposals in resized-image pixels."""
        rpn = self.model.rpn_head
        cfg = self.model.test_cfg.rpn
        cls_scores, bbox_preds = rpn(feats)
        sizes = [c.shape[-2:] for c in cls_scores]
        priors = rpn.prior_generator.grid_priors(sizes, device='cpu')
        boxes, scores, levels = [], [], []
        for i, (cls, reg, anchors) in enumerate(
                zip(cls_scores, bbox_preds, priors)):
            cls = cls[0].permute(1, 2, 0).reshape(-1)  # (A,)
            reg = reg[0].permute(1, 2, 0).reshape(-1, 4)  # (A, 4)
            score = cls.sigmoid()
            k = torch.clamp(_size(score, 0), max=cfg.nms_pre) \
                if cfg.get('nms_pre', -1) > 0 else score.shape[0]
            score, index = score.topk(k)
            boxes.append(graph_ops.delta2bbox(
                anchors[index], reg[index], rpn.bbox_coder.means,
                rpn.bbox_coder.stds, img_hw))
            scores.append(score)
            levels.append(torch.full_like(index, i))
        boxes, scores = torch.cat(boxes), torch.cat(scores)
        levels = torch.cat(levels)
        min_size = cfg.get('min_bbox_size', -1)
        if min_size >= 0:
            wh = boxes[:, 2:] - boxes[:, :2]
            valid = (wh[:, 0] > min_size) & (wh[:, 1] > min_size)
            boxes, scores, levels = boxes[valid], scores[valid], \
                levels[valid]
        # per-level NMS as one: levels apart by more than any coordinate
        # (mmcv's batched_nms below its 10000-box split)
        offset = levels.to(boxes.dtype)[:, None] * (boxes.max() + 1)
        keep = graph_ops.batched_nms(
            (boxes + offset)[None], scores[None, None],
            cfg.nms.iou_threshold)[:, 2]
        return boxes[keep[:cfg.max_per_img]]

    def _bbox_forward(self, stage: int, feats, rois: Tensor):
        roi = self.model.roi_head
        extractor = roi.bbox_roi_extractor[stage] if self.cascade else \
            roi.bbox_roi_extractor
        head = roi.bbox_head[stage] if self.cascade else roi.bbox_head
        pooled = graph_ops.multi_level_roi_align(extractor, feats, rois)
        cls_score, bbox_pred = head(pooled)
        return head, cls_score, bbox_pred

    def _detect(self, feats, proposals: Tensor, img_hw):
        """RoI heads: boxes (K, 4) in resized pixels, scores, labels."""
        cfg = self.model.test_cfg.rcnn
        rois = torch.cat([proposals.new_zeros(proposals.shape[0], 1),
                          proposals], dim=1)  # (P, 5): batch index, box
        num_stages = len(self.model.roi_head.bbox_head) if self.cascade \
            else 1
        logits = []
        for stage in range(num_stages):
            head, cls_score, bbox_pred = self._bbox_forward(stage, feats,
                                                            rois)
            logits.append(cls_score)
            if stage < num_stages - 1:
                # refine each RoI with the regression of its best class
                label = cls_score[:, :-1].argmax(dim=1)
                if not head.reg_class_agnostic:
                    bbox_pred = bbox_pred.view(bbox_pred.shape[0], -1, 4)[
                        torch.arange(bbox_pred.shape[0]), label]
                boxes = graph_ops.delta2bbox(
                    rois[:, 1:], bbox_pred, head.bbox_coder.means,
                    head.bbox_coder.stds, img_hw)
                rois = torch.cat([rois[:, :1], boxes], dim=1)
        # cascade: stage logits averaged, boxes from the last stage
        cls_score = sum(logits) / float(len(logits))
        scores = F.softmax(cls_score, dim=-1)[:, :-1]  # (P, C)
        boxes = graph_ops.delta2bbox(rois[:, 1:], bbox_pred,
                                     head.bbox_coder.means,
                                     head.bbox_coder.stds, img_hw)
        num_classes = scores.shape[1]
        boxes = boxes.view(boxes.shape[0], -1, 4).expand(
            -1, num_classes, 4)  # (P, C, 4), also class-agnostic heads
        # multiclass NMS: one ONNX batch entry per class
        selected = graph_ops.batched_nms(
            boxes.transpose(0, 1), scores.t()[:, None, :],
            cfg.nms.iou_threshold, cfg.max_per_img, cfg.score_thr)
        labels, index = selected[:, 0], selected[:, 2]
        det_scores = scores[index, labels]
        k = torch.clamp(_size(det_scores, 0), max=cfg.max_per_img)
        det_scores, order = det_scores.topk(k)
        return boxes[index[order], labels[order]], det_scores, \
            labels[order]

    def _masks(self, feats, boxes: Tensor, labels: Tensor) -> Tensor:
        """(K, h, w) mask probabilities of each box's class."""
        roi = self.model.roi_head
        rois = torch.cat([boxes.new_zeros(boxes.shape[0], 1), boxes], dim=1)
        heads = list(zip(roi.mask_roi_extractor, roi.mask_head)) \
            if self.cascade else [(roi.mask_roi_extractor, roi.mask_head)]
        probs = []
        for extractor, head in heads:
            pooled = graph_ops.multi_level_roi_align(extractor, feats, rois)
            pred = head(pooled)  # (K, C, h, w)
            if not head.class_agnostic:
                pred = pred[torch.arange(pred.shape[0]), labels]
            else:
                pred = pred[:, 0]
            probs.append(pred.sigmoid())
        return sum(probs) / float(len(probs))  # cascade: mean of stages

    # -- the graph -----------------------------------------------------------
    def forward(self, image: Tensor, ori_hw: Tensor):
        img_hw = (_size(image, 2), _size(image, 3))
        x = self._pad(self.normalize(image))
        feats = self.model.extract_feat(x)
        proposals = self._proposals(feats, img_hw)
        boxes, scores, labels = self._detect(feats, proposals, img_hw)
        # mmdet's scale_factor: resized / original size, per axis
        scale = torch.stack([img_hw[1] / ori_hw[1], img_hw[0] / ori_hw[0]])
        scale = scale.to(boxes.dtype).repeat(2)
        outputs = (boxes / scale, scores, labels)
        if self.with_mask:
            probs = self._masks(feats, boxes, labels)
            masks = graph_ops.paste_masks(
                probs, boxes / scale, ori_hw[0], ori_hw[1],
                self.model.test_cfg.rcnn.get('mask_thr_binary', 0.5))
            outputs += (masks, )
        return outputs
