"""Third-party warnings nobody using this package can act on, silenced at
the module that raises each, and nowhere else.

Imported first by ``convnext_dense/__init__.py``, before mmengine, whose
import raises the first of them.
"""
import warnings

# (message regex, module the warning is attributed to)
KNOWN_WARNINGS = (
    # setuptools >= 81 deprecates pkg_resources; mmengine imports it
    ('pkg_resources is deprecated', 'mmengine.utils.package_utils'),
    # the same, for the packages importlib imports that use it (mmcv, mmdet
    # and mmseg through custom_imports)
    ('pkg_resources is deprecated', 'importlib'),
    # mmdet's mask head copies a tensor with new_tensor; harmless
    ('To copy construct from a tensor',
     'mmdet.models.roi_heads.mask_heads.fcn_mask_head'),
)


def filter_known_warnings() -> None:
    """Ignore :data:`KNOWN_WARNINGS`, each only from its module."""
    for message, module in KNOWN_WARNINGS:
        warnings.filterwarnings('ignore', message=message, module=module)
