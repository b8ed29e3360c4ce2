"""convnext_dense: ConvNeXt backbones for mmdet 3.x and mmsegmentation 1.x.

Importing the package registers everything under the ``convnext_dense``
registry scope; configs load it with ``custom_imports=dict(imports=
['convnext_dense'], allow_failed_imports=False)``.
"""
# first: the harmless third-party warnings mmengine's import raises
from .known_warnings import filter_known_warnings  # noqa: I001
filter_known_warnings()
# mmengine reads mmdet's and mmseg's package metadata once, not once for
# each `mmdet::` base of a config, and formats each config text once
from .config_cache import cache_config_work  # noqa: E402,I001
cache_config_work()
# then: mmcv's missing compiled ops, before anything imports mmcv.ops
from . import ops  # noqa: F401,E402,I001
from . import checkpoint  # noqa: F401,E402  (safe loaders for mmengine)
from . import models  # noqa: F401,E402  (registers ConvNeXt)
from . import engine  # noqa: F401,E402
from .registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS  # noqa: E402

__version__ = '0.1.0'
__all__ = ['MODELS', 'OPTIM_WRAPPER_CONSTRUCTORS', '__version__']
