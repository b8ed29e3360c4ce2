"""The checkpoint package's modules and who imports whom among them.

Each imports on its own in a fresh interpreter (tests/test_architecture.py
imports every module of the package that way): no import circle is held
together by the order in which a package ``__init__`` happens to import its
modules (``models/checkpoint.py -> checkpoint_io.py -> checkpoint_match.py
-> checkpoint.py`` was one: importing ``checkpoint_match`` first failed
with "partially initialized module"), and the reader imports none of the
modules above it.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / 'convnext_dense' / \
    'checkpoint'
MODULES = sorted(path.stem for path in PACKAGE.glob('*.py')
                 if path.stem != '__init__')


def test_the_package_has_the_expected_modules() -> None:
    assert MODULES == ['backbone', 'detrex_dino', 'download', 'hf_upernet',
                       'key_schemas',
                       'loaders', 'mismatch', 'preflight', 'reader',
                       'released']


def _siblings(module: str) -> set[str]:
    tree = ast.parse((PACKAGE / f'{module}.py').read_text())
    return {node.module.split('.')[0] for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.level == 1
            and node.module}


@pytest.mark.parametrize('module, allowed', [
    ('preflight', set()),
    ('key_schemas', set()),
    ('reader', {'preflight'}),
    ('hf_upernet', {'key_schemas'}),
    ('download', {'reader'}),
    ('mismatch', {'reader'}),
    ('detrex_dino', set()),
    ('loaders', {'detrex_dino', 'download', 'hf_upernet'}),
    ('backbone', {'download', 'key_schemas', 'reader'}),
])
def test_modules_import_only_those_below_them(module: str,
                                              allowed: set) -> None:
    assert _siblings(module) == allowed
