"""The forward pass whose multiply-adds are counted, per kind of model.

Each wrapper runs the part of a model that the published counts cover, on
one image, and returns only tensors (what a ``torch.jit`` trace needs):

- two-stage detectors (:class:`DetectorFlopsForward`), at 1280x800:
  backbone, FPN and the RPN head's convolutions on the image; every box head
  on 1000 proposals and every mask head on the first 100 of them, as mmdet
  2.x's ``forward_dummy`` ran them. (mmdet 3.x's ``_forward`` takes however
  many proposals the RPN keeps, which depends on the weights, and runs the
  mask heads on all of them: up to 10x the mask cost.)
- segmentors (:class:`SegmentorFlopsForward`), at the test scale of the
  crop size (2048x512 for 512 crops, 2560x640 for 640): backbone and
  UPerHead, without the auxiliary head, which only trains. mmseg's
  ``EncoderDecoder._forward`` is exactly this.
- Mask2Former (:class:`QueryHeadFlopsForward`): backbone, pixel decoder and
  every transformer-decoder layer with its class and mask predictions.
- DETR-like detectors such as DINO (:class:`TransformerDetectorFlopsForward`):
  mmdet's ``_forward`` in eval mode, without the denoising queries.

:func:`flops_forward` picks the wrapper for a built model.
"""
from __future__ import annotations

from typing import Iterable

import torch
import torch.nn as nn

# mmdet 2.x forward_dummy: box heads on 1000 proposals, mask heads on 100
NUM_PROPOSALS = 1000
NUM_MASK_ROIS = 100


class DetectorFlopsForward(nn.Module):
    """The part of a two-stage detector whose cost the paper reports.

    Backbone, neck and the RPN head's convolutions run on the image; each
    box head on ``num_proposals`` fixed RoIs, each mask head on the first
    ``num_mask_rois`` of them (mmdet 2.x ``forward_dummy``). The RoIs are
    spread over the image and over box sizes so that every FPN level gets
    some; their values do not change any count.

    Args:
        detector: An mmdet two-stage detector (Mask R-CNN, Cascade Mask
            R-CNN) in eval mode.
        input_size: (width, height) of the image the RoIs lie in.
        num_proposals: RoIs through the box heads. Defaults to 1000.
        num_mask_rois: RoIs through the mask heads. Defaults to 100.
    """

    def __init__(self,
                 detector: nn.Module,
                 input_size: tuple[int, int],
                 num_proposals: int = NUM_PROPOSALS,
                 num_mask_rois: int = NUM_MASK_ROIS) -> None:
        super().__init__()
        self.detector = detector
        width, height = input_size
        # boxes of side 16 .. 512 px, centres on a pseudo-random walk
        index = torch.arange(num_proposals, dtype=torch.float32)
        side = 16 * 2**(5 * (index % 11) / 10)  # (num_proposals, )
        cx = (index * 0.618034 % 1) * width
        cy = (index * 0.414214 % 1) * height
        boxes = torch.stack([
            (cx - side / 2).clamp(0, width - 1),
            (cy - side / 2).clamp(0, height - 1),
            (cx + side / 2).clamp(1, width),
            (cy + side / 2).clamp(1, height)
        ], dim=1)
        # (num_proposals, 5): batch index 0, then x1, y1, x2, y2; a plain
        # attribute, not a buffer, so the trace takes it as a constant
        self.rois = torch.cat([torch.zeros(num_proposals, 1), boxes], dim=1)
        self.num_mask_rois = num_mask_rois

    def forward(self, img: torch.Tensor) -> tuple:
        from mmdet.models.roi_heads import CascadeRoIHead

        detector = self.detector
        feats = detector.extract_feat(img)
        outs = [detector.rpn_head(feats)]
        roi_head = detector.roi_head
        rois = self.rois.to(img.device)
        mask_rois = rois[:self.num_mask_rois]
        if isinstance(roi_head, CascadeRoIHead):
            # as forward_dummy: every stage on the same RoIs
            for stage in range(roi_head.num_stages):
                outs.append(roi_head._bbox_forward(stage, feats, rois))
            if roi_head.with_mask:
                for stage in range(roi_head.num_stages):
                    outs.append(
                        roi_head._mask_forward(stage, feats, mask_rois))
        else:
            outs.append(roi_head._bbox_forward(feats, rois))
            if roi_head.with_mask:
                outs.append(roi_head._mask_forward(feats, mask_rois))
        return tuple(_tensors(outs))


class SegmentorFlopsForward(nn.Module):
    """Backbone and decode head of an mmseg ``EncoderDecoder`` (its
    ``_forward``): what the paper's segmentation FLOPs cover."""

    def __init__(self, segmentor: nn.Module) -> None:
        super().__init__()
        self.segmentor = segmentor

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        return self.segmentor._forward(img)


class QueryHeadFlopsForward(nn.Module):
    """Backbone and Mask2Former head (mmseg's semantic or mmdet's instance
    one): pixel decoder and every transformer-decoder layer with its class
    and mask predictions, as both run them at test."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.head = query_head(model)

    def forward(self, img: torch.Tensor) -> tuple:
        # the heads' forward reads nothing from the data samples
        return tuple(_tensors(self.head(self.model.extract_feat(img), [])))


class TransformerDetectorFlopsForward(nn.Module):
    """A DETR-like mmdet detector (DINO) at test: its ``_forward`` in eval
    mode.

    That is the backbone and the neck on the image; ``forward_transformer``:
    every encoder layer on every token of the neck's levels, the query
    selection (the encoder-output projection and the last class and box
    branches on every token, then the top ``num_queries``), every decoder
    layer on the ``num_queries`` queries (with its box refinement); and the
    bbox head's class and box branches on every decoder layer's output. In
    eval mode DINO's ``pre_decoder`` adds no denoising queries (they only
    train), and nothing after the head (top-k, box scaling) runs.

    Args:
        detector: An mmdet ``DetectionTransformer`` in eval mode.
        input_size: (width, height) of the image, unpadded.
    """

    def __init__(self, detector: nn.Module,
                 input_size: tuple[int, int]) -> None:
        from mmdet.structures import DetDataSample

        super().__init__()
        self.detector = detector
        width, height = input_size
        # the positional encoding and padding masks read these shapes
        self.data_samples = [DetDataSample(metainfo=dict(
            batch_input_shape=(height, width), img_shape=(height, width)))]

    def forward(self, img: torch.Tensor) -> tuple:
        return tuple(_tensors(self.detector._forward(img,
                                                     self.data_samples)))


def query_head(model: nn.Module) -> nn.Module | None:
    """The model's Mask2Former head, or None."""
    head = getattr(model, 'panoptic_head', getattr(model, 'decode_head',
                                                   None))
    return head if hasattr(head, 'transformer_decoder') else None


def flops_forward(model: nn.Module,
                  task: str,
                  input_size: tuple[int, int],
                  num_proposals: int = NUM_PROPOSALS,
                  num_mask_rois: int = NUM_MASK_ROIS) -> nn.Module:
    """The wrapper that runs what is counted of ``model``.

    Args:
        model: A built mmdet detector or mmseg segmentor in eval mode.
        task: 'det' or 'seg' (:func:`convnext_dense.tasks.detect_task`).
        input_size: (width, height) of the image.
        num_proposals: Two-stage detectors: RoIs through each box head.
            Defaults to 1000.
        num_mask_rois: Two-stage detectors: RoIs through each mask head.
            Defaults to 100.
    """
    if query_head(model) is not None:
        return QueryHeadFlopsForward(model)
    if hasattr(model, 'forward_transformer'):
        return TransformerDetectorFlopsForward(model, input_size)
    if task == 'det':
        return DetectorFlopsForward(model, input_size, num_proposals,
                                    num_mask_rois)
    return SegmentorFlopsForward(model)


def _tensors(obj) -> Iterable[torch.Tensor]:
    """Every tensor in a nest of tuples, lists and dicts (a jit trace must
    return tensors only)."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _tensors(value)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            yield from _tensors(value)
