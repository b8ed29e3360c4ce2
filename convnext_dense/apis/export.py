"""Export a trained config's model to ONNX: build it, load its checkpoint
strictly, take class names and palette for the file's metadata, and hand it
to :func:`convnext_dense.deploy.onnx_export.export_model` (the graphs).
"""
from __future__ import annotations

from mmengine.config import Config

from convnext_dense.deploy.onnx_export import DEFAULT_OPSET, export_model
from convnext_dense.fileio import check_outputs
from convnext_dense.optional import require
from convnext_dense.tasks import build_model, detect_task

from .model_files import (dataset_meta_for, load_checkpoint_strict,
                          resolve_checkpoint, resolve_config)


def export_onnx(config: str,
                checkpoint: str,
                out: str,
                part: str = 'model',
                shape: tuple[int, int] | None = None,
                opset: int = DEFAULT_OPSET,
                dynamic: bool = True,
                fp16: bool = False) -> str:
    """Build the config's model, load its checkpoint strictly, export.

    Args:
        config: Config file or training work dir.
        checkpoint: Checkpoint file or training work dir.
        out: The .onnx file to write.
        part: 'model', 'backbone' or 'neck'. Defaults to 'model'.
        shape: (H, W) to trace at. Defaults to the test pipeline's resize
            scale for the model (its (H, W)), 224x224 for the feature parts.
        opset: ONNX opset. Defaults to 17.
        dynamic: Dynamic height and width (and batch where possible).
        fp16: Compute the backbone (and neck) in float16; see
            :func:`~convnext_dense.deploy.onnx_export.export_model`.
            Defaults to False.

    Returns:
        ``out``.

    Raises:
        OutputOverwritesInputError: If ``out`` is the config or the
            checkpoint (links resolved), before anything is built.
    """
    require('onnx', 'ONNX export')  # before building anything
    config, checkpoint = resolve_config(config), resolve_checkpoint(checkpoint)
    check_outputs([('--out', out)], [('the config', config),
                                     ('the checkpoint', checkpoint)],
                  why='choose another file')
    cfg = Config.fromfile(config)
    task = detect_task(cfg)
    model = build_model(cfg)
    meta = load_checkpoint_strict(model, checkpoint)
    dataset_meta = dataset_meta_for(model, task, meta, cfg)
    if shape is None:
        shape = (224, 224) if part != 'model' else _pipeline_hw(cfg)
    return export_model(
        model.eval(), task, out, part=part, shape=shape, opset=opset,
        dynamic=dynamic, fp16=fp16,
        metadata=dict(classes=list(dataset_meta['classes']),
                      palette=[list(c) for c in dataset_meta['palette']]))


def _pipeline_hw(cfg) -> tuple[int, int]:
    """(H, W) of the test pipeline's Resize scale, capped at 512 (the
    graph is dynamic; this only sets the size traced with)."""
    for transform in cfg.get('test_pipeline', []):
        if 'Resize' in transform.get('type', '') and 'scale' in transform:
            width, height = transform['scale']
            return min(height, 512), min(width, 512)
    return 512, 512
