"""Checkpoints: reading them safely, downloading them, mapping their key
schemas onto the backbone, converting them, and checking that they fit a
model.

- :mod:`.preflight`: what a file is (no checkpoint at all?) and what it
  would make the loader allocate, before it is unpickled;
- :mod:`.reader`: the one reader of local files (safetensors, or
  ``torch.load(weights_only=True)`` with the allow-list), and the error
  family :class:`CheckpointError` every tool reports in one line;
- :mod:`.download`: URLs and model-zoo names, through a per-URL cache;
- :mod:`.loaders`: mmengine's ``CheckpointLoader`` schemes, all through the
  reader (registered when this package is imported);
- :mod:`.key_schemas`: the official, DINOv3, timm, mmpretrain and Hugging
  Face key schemas and the pure functions between them;
- :mod:`.hf_upernet`: Hugging Face UperNet <-> mmseg UperNet;
- :mod:`.backbone`: loading any schema into the backbone, and converting
  files between schemas;
- :mod:`.mismatch`: does a checkpoint fit the model a config builds.

Each imports only modules listed above it (``hf_upernet`` only
``key_schemas``).
"""
from . import loaders  # noqa: F401  (mmengine's loaders: safe reads)
from .backbone import (FORMATS, convert_checkpoint, from_official,
                       load_backbone_checkpoint, read_checkpoint,
                       to_official)
from .loaders import read_model_checkpoint
from .mismatch import CheckpointMismatchError, compare_state_dicts
from .reader import (CHECKPOINT_ERRORS, CheckpointError,
                     UnreadableCheckpointError, UnsafeCheckpointError,
                     allow_mmengine_checkpoint_types, read_checkpoint_file)

__all__ = [
    'CHECKPOINT_ERRORS', 'CheckpointError', 'CheckpointMismatchError',
    'FORMATS', 'UnreadableCheckpointError', 'UnsafeCheckpointError',
    'allow_mmengine_checkpoint_types', 'compare_state_dicts',
    'convert_checkpoint', 'from_official', 'load_backbone_checkpoint',
    'read_checkpoint', 'read_checkpoint_file', 'read_model_checkpoint',
    'to_official'
]
