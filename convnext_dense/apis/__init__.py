"""What the tools share: training and testing runs (:mod:`.cli`), inference
on images and painting (:mod:`.inference`), the demos (:mod:`.demo`), and
exporting a trained config to ONNX (:mod:`.export`)."""
from ..tasks import detect_task
from .images import OutputOverwritesInputError, UnreadableImageError
from .inference import (CheckpointMismatchError, Inferencer,
                        load_checkpoint_strict, run_inference)

__all__ = [
    'CheckpointMismatchError', 'Inferencer', 'OutputOverwritesInputError',
    'UnreadableImageError',
    'detect_task', 'load_checkpoint_strict', 'run_inference'
]
