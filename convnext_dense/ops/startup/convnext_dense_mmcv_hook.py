"""Serve ``mmcv._ext`` from convnext_dense.ops in any import order.

``tools/install.sh`` writes a ``.pth`` file into the environment that puts
this folder on ``sys.path`` and imports this module at interpreter start-up.
It only adds a finder at the end of ``sys.meta_path`` (no torch, no mmcv is
imported here): when something imports ``mmcv._ext`` and no other finder
has it (mmcv-lite), the finder imports ``convnext_dense``, which installs
its torch/torchvision ops as ``mmcv._ext``. So a script that imports
``mmdet.models`` before ``convnext_dense``, or never imports it, works too.
"""
import importlib.abc
import importlib.machinery
import sys

_NAME = 'mmcv._ext'


class MmcvExtFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``mmcv._ext`` only where no other finder does."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != _NAME:
            return None
        if importlib.machinery.PathFinder.find_spec(fullname, path):
            return None  # mmcv's own compiled extension
        return importlib.machinery.ModuleSpec(fullname, self)

    def create_module(self, spec):
        import convnext_dense.ops  # noqa: F401  (installs mmcv._ext)
        module = sys.modules.get(_NAME)
        if module is None:
            raise ImportError('convnext_dense.ops did not install mmcv._ext')
        return module

    def exec_module(self, module):
        pass


if not any(isinstance(f, MmcvExtFinder) for f in sys.meta_path):
    sys.meta_path.append(MmcvExtFinder())
