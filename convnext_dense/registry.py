"""The one registry scope of convnext_dense.

Each registry is a child of mmengine's root registry of the same kind, so that
mmdet and mmseg configs alike can say ``type='convnext_dense.ConvNeXt'``: the
``convnext_dense.`` prefix makes mmengine look the name up in this scope,
whichever downstream registry (mmdet's or mmseg's) does the building.
"""
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import OPTIM_WRAPPERS as MMENGINE_OPTIM_WRAPPERS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import VISUALIZERS as MMENGINE_VISUALIZERS
from mmengine.registry import Registry

SCOPE = 'convnext_dense'

MODELS = Registry(
    'model',
    parent=MMENGINE_MODELS,
    scope=SCOPE,
    locations=['convnext_dense.models'])

OPTIM_WRAPPER_CONSTRUCTORS = Registry(
    'optimizer wrapper constructor',
    parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS,
    scope=SCOPE,
    locations=['convnext_dense.engine'])

HOOKS = Registry(
    'hook', parent=MMENGINE_HOOKS, scope=SCOPE,
    locations=['convnext_dense.engine'])

MODEL_WRAPPERS = Registry(
    'model_wrapper', parent=MMENGINE_MODEL_WRAPPERS, scope=SCOPE,
    locations=['convnext_dense.engine'])

TRANSFORMS = Registry(
    'transform', parent=MMENGINE_TRANSFORMS, scope=SCOPE,
    locations=['convnext_dense.engine'])

VISUALIZERS = Registry(
    'visualizer', parent=MMENGINE_VISUALIZERS, scope=SCOPE,
    locations=['convnext_dense.engine'])

OPTIM_WRAPPERS = Registry(
    'optim_wrapper', parent=MMENGINE_OPTIM_WRAPPERS, scope=SCOPE,
    locations=['convnext_dense.engine'])
