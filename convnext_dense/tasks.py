"""Which task a config is for, its model, and its test pipeline.

mmdet and mmseg configs run through the same tools; the few places where
the two differ (which registry builds the model, where painted test images
go, how predictions are dumped) ask :func:`detect_task`, the one rule.

This module sits below :mod:`convnext_dense.deploy`,
:mod:`convnext_dense.analysis` and :mod:`convnext_dense.apis`, which all
build models from configs, and imports none of them (docs/architecture.md).
"""
from __future__ import annotations

import torch.nn as nn
from mmengine.config import Config


def detect_task(cfg: Config) -> str:
    """'det' for an mmdet config, 'seg' for an mmseg config.

    The config's ``default_scope`` decides (mmdet's and mmseg's runtime
    bases set it); without one, the registry that knows ``model.type``.

    Raises:
        ValueError: If neither tells.
    """
    scope = cfg.get('default_scope')
    if scope in ('mmdet', 'mmseg'):
        return {'mmdet': 'det', 'mmseg': 'seg'}[scope]
    model_type = cfg.get('model', {}).get('type')
    if isinstance(model_type, str):
        prefix = model_type.split('.')[0] if '.' in model_type else None
        if prefix in ('mmdet', 'mmseg'):
            return {'mmdet': 'det', 'mmseg': 'seg'}[prefix]
        from mmdet.registry import MODELS as DET_MODELS
        from mmdet.utils import register_all_modules as register_det
        from mmseg.registry import MODELS as SEG_MODELS
        from mmseg.utils import register_all_modules as register_seg
        register_det(init_default_scope=False)
        register_seg(init_default_scope=False)
        in_det = model_type in DET_MODELS.module_dict
        in_seg = model_type in SEG_MODELS.module_dict
        if in_det != in_seg:
            return 'det' if in_det else 'seg'
    raise ValueError(
        f'cannot tell whether the config is for detection or segmentation: '
        f'default_scope={scope!r}, model.type={model_type!r}; set '
        "default_scope='mmdet' or 'mmseg'")


def build_model(cfg: Config) -> nn.Module:
    """Build ``cfg.model`` in eval mode on the CPU, without loading any
    pretrained weights, with SyncBN reverted to BN."""
    from mmengine.model.utils import revert_sync_batchnorm
    from mmengine.registry import init_default_scope

    task = detect_task(cfg)
    init_default_scope('mmdet' if task == 'det' else 'mmseg')
    if task == 'det':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    # building does not call init_weights: no pretrained file is read
    model = MODELS.build(cfg.model)
    return revert_sync_batchnorm(model).eval()


def inference_pipeline(cfg: Config, task: str):
    """The config's test pipeline for one in-memory image.

    As mmdet's and mmseg's inference APIs build it: the config's
    ``test_pipeline`` (else its test dataset's pipeline), without annotation
    loading, reading the image from an array (``dict(img=image)``). Transform
    types get the task's scope, so the pipeline builds whatever the default
    scope.
    """
    from mmcv.transforms import Compose

    if task == 'det':
        from mmdet.utils import register_all_modules
    else:
        from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    scope = 'mmdet' if task == 'det' else 'mmseg'
    steps = cfg.get('test_pipeline') or \
        cfg.test_dataloader.dataset.pipeline
    steps = [dict(t) for t in steps if 'LoadAnnotations' not in t['type']]
    steps[0] = dict(steps[0], type=f'{scope}.LoadImageFromNDArray')
    return Compose([
        dict(t, type=t['type'] if '.' in t['type'] else
             f'{scope}.{t["type"]}') for t in steps
    ])
