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
    # mmseg's decode heads build their losses with its own deprecated
    # build_loss
    ('``build_loss`` would be deprecated', 'mmseg.models.builder'),
    # the published UperNet recipes average the loss over every pixel, the
    # default this warns about on each CrossEntropyLoss
    ('Default ``avg_non_ignore`` is False',
     'mmseg.models.losses.cross_entropy_loss'),
    # mmseg's own ADE20K config sets reduce_zero_label in LoadAnnotations,
    # the same value as its ADE20KDataset
    ('`reduce_zero_label` will be deprecated',
     'mmseg.datasets.transforms.loading'),
)


def filter_known_warnings() -> None:
    """Ignore :data:`KNOWN_WARNINGS`, each only from its module."""
    for message, module in KNOWN_WARNINGS:
        warnings.filterwarnings('ignore', message=message, module=module)
