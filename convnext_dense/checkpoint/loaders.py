"""mmengine's ``CheckpointLoader``: every scheme through the safe reader.

Importing this module registers these loaders in mmengine's
``CheckpointLoader`` in place of mmengine's own (which hand URLs to
``torch.hub``'s loader, and that unpickles with ``weights_only=False``), so
``tools/test.py CONFIG URL``, ``--resume URL``, ``load_from=URL`` and
``init_cfg=dict(type='Pretrained', checkpoint=URL)`` all read through
:func:`~.reader.read_checkpoint_file`.
"""
from __future__ import annotations

from typing import Any

from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

from .detrex_dino import detrex_dino_to_mmdet, is_detrex_dino
from .download import URL_PREFIXES, ZOO_PREFIXES, load_checkpoint_file
from .hf_upernet import is_hf_upernet, upernet_to_mmseg


def read_model_checkpoint(filename: str, map_location: Any = 'cpu') -> Any:
    """Read a whole-model checkpoint given by a path, URL or zoo name, as
    mmengine's loaders below and :func:`~convnext_dense.apis.inference.
    load_checkpoint_strict` do."""
    return _model_in_mm_names(
        load_checkpoint_file(filename, map_location))


def _model_in_mm_names(checkpoint: Any) -> Any:
    """A Hugging Face ``UperNetForSemanticSegmentation`` on ConvNeXt (a flat
    state dict) in mmseg's names, or a detrex DINO checkpoint in mmdet's,
    wrapped as mmengine's checkpoints are, so ``tools/test.py CONFIG
    model.safetensors`` (or ``dino_convnext_*.pth``) evaluates it; anything
    else unchanged."""
    if isinstance(checkpoint, dict) and is_hf_upernet(checkpoint):
        return {'state_dict': upernet_to_mmseg(checkpoint)}
    # detrex (Detectron2) checkpoints keep the state dict under 'model'
    model = checkpoint.get('model') if isinstance(checkpoint, dict) else None
    if isinstance(model, dict) and is_detrex_dino(model):
        return {'state_dict': detrex_dino_to_mmdet(model)}
    return checkpoint


def load_from_local(filename: str, map_location: Any = None) -> Any:
    """mmengine's loader for local paths (the empty prefix)."""
    return read_model_checkpoint(filename, map_location)


def load_from_remote(filename: str, map_location: Any = None,
                     **_: Any) -> Any:
    """mmengine's loader for URLs and zoo names (download, then read)."""
    return read_model_checkpoint(filename, map_location)


def register_safe_loaders() -> None:
    """Make mmengine read every local path, URL and zoo name through
    :func:`read_checkpoint_file`. Idempotent."""
    CheckpointLoader.register_scheme('', load_from_local, force=True)
    CheckpointLoader.register_scheme(URL_PREFIXES + ZOO_PREFIXES,
                                     load_from_remote, force=True)
    # mmengine's zoo loaders call this module-level name; a third-party
    # scheme that does too gets the safe reader
    mmengine_checkpoint.load_from_http = load_from_remote


register_safe_loaders()
