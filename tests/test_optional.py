"""Optional dependencies: a missing one names the pip extra that brings it,
before any work starts."""
from __future__ import annotations

import sys

import pytest
import torch.nn as nn

from convnext_dense.optional import MissingDependencyError, require


@pytest.fixture
def without(monkeypatch):
    """Hide installed modules (``sys.modules[name] = None`` makes their
    import fail as if they were not installed)."""
    def hide(*names: str) -> None:
        for name in names:
            monkeypatch.setitem(sys.modules, name, None)
    return hide


@pytest.mark.parametrize('module, extra', [
    ('onnx', 'deploy'), ('onnxruntime', 'deploy'), ('timm', 'benchmark')])
def test_missing_module_names_its_extra(without, module, extra) -> None:
    without(module)
    with pytest.raises(MissingDependencyError) as error:
        require(module, 'Something')
    assert str(error.value) == (
        f'Something needs {module}, which is not installed: pip install '
        f'"convnext_dense[{extra}]"')


def test_present_module_is_returned() -> None:
    assert require('json', 'Something').__name__ == 'json'


def test_export_refuses_before_tracing(without, monkeypatch) -> None:
    from convnext_dense.deploy import onnx_export

    def trace(*args, **kwargs):
        raise AssertionError('the graph was built before the check')
    monkeypatch.setattr(onnx_export, 'build_graph', trace)
    without('onnx')
    with pytest.raises(MissingDependencyError, match=r'convnext_dense\['
                       r'deploy\]'):
        onnx_export.export_model(nn.Identity(), 'seg', 'out.onnx',
                                 part='backbone')


def test_runtime_and_benchmark_name_their_extras(without) -> None:
    from convnext_dense.analysis.speed import build_backbone
    from convnext_dense.deploy.runtime import make_session
    without('onnxruntime', 'timm')
    with pytest.raises(MissingDependencyError, match=r'\[deploy\]'):
        make_session('model.onnx')
    with pytest.raises(MissingDependencyError, match=r'\[benchmark\]'):
        build_backbone('timm', 'test')
