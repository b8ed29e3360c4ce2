"""What the tools share: training and testing runs (:mod:`.cli`), inference
on images and painting (:mod:`.inference`, reading the model's files in
:mod:`.model_files`), the demos (:mod:`.demo`), and
exporting a trained config to ONNX (:mod:`.export`)."""
from ..tasks import detect_task
from .images import OutputOverwritesInputError, UnreadableImageError
from ..checkpoint.mismatch import CheckpointMismatchError
from .inference import Inferencer, run_inference
from .model_files import load_checkpoint_strict

__all__ = [
    'CheckpointMismatchError', 'Inferencer', 'OutputOverwritesInputError',
    'UnreadableImageError',
    'detect_task', 'load_checkpoint_strict', 'run_inference'
]
