"""Inference on images: build a model from a config and a checkpoint, run
it, paint the predictions (:mod:`convnext_dense.apis.inference`)."""
from .inference import (CheckpointMismatchError, Inferencer,
                        OutputOverwritesInputError, UnreadableImageError,
                        detect_task,
                        load_checkpoint_strict, run_inference)

__all__ = [
    'CheckpointMismatchError', 'Inferencer', 'OutputOverwritesInputError',
    'UnreadableImageError',
    'detect_task', 'load_checkpoint_strict', 'run_inference'
]
