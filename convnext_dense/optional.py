"""Imports of the optional dependencies, with the pip extra that brings them.

``onnx`` and ``onnxruntime`` (ONNX export and inference) are the pip extra
``deploy``; ``timm`` and ``mmpretrain`` are references of the benchmark
(extra ``benchmark``). Nothing else in the package needs them, so they are
imported where they are used, through :func:`require`, which names the extra
when one is missing.
"""
from __future__ import annotations

import importlib
from types import ModuleType

EXTRAS = {'onnx': 'deploy', 'onnxruntime': 'deploy', 'timm': 'benchmark',
          'mmpretrain': 'benchmark'}


class MissingDependencyError(ImportError):
    """An optional dependency is not installed."""


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (one of :data:`EXTRAS`' keys or a submodule of one).

    Args:
        module: The module to import, e.g. ``'onnxruntime'``.
        purpose: What needs it, for the message (``'ONNX export'``).

    Raises:
        MissingDependencyError: The distribution is not installed; the
            message names the pip extra that installs it.
    """
    top = module.split('.')[0]
    try:
        return importlib.import_module(module)
    except ImportError as error:
        if error.name is not None and error.name.split('.')[0] != top:
            raise  # the module is there but one of its own imports failed
        raise MissingDependencyError(
            f'{purpose} needs {top}, which is not installed: pip install '
            f'"convnext_dense[{EXTRAS[top]}]"') from error
