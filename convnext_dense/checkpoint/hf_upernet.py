"""Trained UperNet segmentors: Hugging Face's layout <-> mmseg's.

transformers' ``UperNetForSemanticSegmentation`` with a ConvNeXt backbone
(e.g. ``openmmlab/upernet-convnext-*``) is mmseg's UperNet renamed: the
backbone is ``ConvNextBackbone`` (its key schema is the ``huggingface`` row
of :mod:`convnext_dense.checkpoint.key_schemas`, prefix ``backbone.``, with
``hidden_states_norms.stage{1..4}`` for our ``norm0..3``); the heads keep
mmseg's module names except that ``ConvModule``'s ``bn`` is ``batch_norm``
and ``conv_seg`` is ``classifier``. Both functions here are pure and
inverse to each other; every key is mapped or the call fails.

``tools/test.py CONFIG model.safetensors`` evaluates such a file directly:
mmengine's checkpoint loader of this package converts it on reading
(:mod:`convnext_dense.checkpoint.loaders`).
"""
from __future__ import annotations

import re
from collections.abc import Mapping

import torch

from .key_schemas import from_official, to_official

HEADS = ('decode_head.', 'auxiliary_head.')
# (mmseg spelling, Hugging Face spelling) of the parts of a head's key
_HEAD_PARTS = ((r'\.bn\.', '.batch_norm.'), (r'\.conv_seg\.', '.classifier.'))


def is_hf_upernet(state_dict: Mapping[str, object]) -> bool:
    """Whether a flat state dict is a Hugging Face UperNet on ConvNeXt."""
    return ('decode_head.classifier.weight' in state_dict
            and 'backbone.embeddings.patch_embeddings.weight' in state_dict)


def _rename_head(key: str, to_hf: bool) -> str:
    for mmseg, hf in _HEAD_PARTS:
        key = (re.sub(mmseg, hf, key) if to_hf
               else key.replace(hf, mmseg.replace('\\', '')))
    return key


def upernet_to_mmseg(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """A Hugging Face UperNet state dict in mmseg's names (backbone in the
    official ConvNeXt layout, as this package's backbone has it).

    Raises:
        ValueError: if a key is neither backbone nor head.
    """
    backbone = {k: v for k, v in state_dict.items()
                if k.startswith('backbone.')}
    official, unknown = to_official(backbone, 'huggingface')
    others = [k for k in state_dict
              if not k.startswith(('backbone.', ) + HEADS)]
    if unknown or others:
        raise ValueError('keys of no UperNet part: '
                         f'{(unknown + others)[:5]}')
    out = {f'backbone.{k}': v for k, v in official.items()}
    out.update({_rename_head(k, to_hf=False): v
                for k, v in state_dict.items() if k.startswith(HEADS)})
    return out


def mmseg_to_upernet(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """The inverse of :func:`upernet_to_mmseg`: an mmseg UperNet with this
    package's ConvNeXt as a Hugging Face ``UperNetForSemanticSegmentation``
    state dict.

    Raises:
        KeyError: if a backbone key has no Hugging Face spelling.
        ValueError: if a key is neither backbone nor head.
    """
    others = [k for k in state_dict
              if not k.startswith(('backbone.', ) + HEADS)]
    if others:
        raise ValueError(f'keys of no UperNet part: {others[:5]}')
    backbone = {k[len('backbone.'):]: v for k, v in state_dict.items()
                if k.startswith('backbone.')}
    out = from_official(backbone, 'huggingface', prefix='backbone.')
    out.update({_rename_head(k, to_hf=True): v
                for k, v in state_dict.items() if k.startswith(HEADS)})
    return out
