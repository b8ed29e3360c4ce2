"""The import graph of the package: layers import only downward, no cycles,
and every module imports on its own (docs/architecture.md).

The static check reads every ``import`` of every module with ``ast``, those
inside functions included (a lazy import is still an arrow of the graph).
"""
from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / 'convnext_dense'

# Lowest first. A module may import from its own layer and the layers below.
# 'convnext_dense' is the package's __init__: importing it registers the
# ops, the model and the training machinery.
LAYERS = (
    ('base', ('paths', 'registry', 'optional', 'fileio', 'known_warnings',
              'config_cache', 'toy_data')),
    ('ops', ('ops',)),
    ('checkpoint', ('checkpoint',)),
    ('models', ('models',)),
    ('engine', ('engine',)),
    ('package', ('__init__',)),
    ('tasks', ('tasks',)),
    ('deploy', ('deploy',)),
    ('analysis', ('analysis',)),
    ('apis', ('apis',)),
)
LAYER_OF = {part: index for index, (_, parts) in enumerate(LAYERS)
            for part in parts}
# Files that are not modules of the package: the start-up hook is put on
# sys.path by a .pth file and imported as a top-level module.
NOT_MODULES = ('ops/startup/',)
# Import circles tolerated for now (none): an entry whose modules no longer
# exist fails the test, so the list cannot go stale.
KNOWN_CYCLES = ()


def package_modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    modules = {}
    for path in sorted(PACKAGE.rglob('*.py')):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(NOT_MODULES):
            continue
        parts = ['convnext_dense', *relative[:-3].split('/')]
        if parts[-1] == '__init__':
            parts.pop()
        modules['.'.join(parts)] = path
    return modules


def layer(module: str) -> int:
    parts = module.split('.')
    key = parts[1] if len(parts) > 1 else '__init__'
    if key not in LAYER_OF:
        raise AssertionError(
            f'{module} is in no layer: add {key!r} to LAYERS in '
            f'{__file__} and to docs/architecture.md')
    return LAYER_OF[key]


def imported_modules(module: str, path: Path, known: set[str]) -> set[str]:
    """The package modules ``module`` imports (anywhere in the file)."""
    is_package = path.name == '__init__.py'
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split('.')
                if not is_package:
                    base = base[:-1]
                base = base[:len(base) - node.level + 1]
                stem = '.'.join(base + ([node.module] if node.module else []))
            else:
                stem = node.module
            # `from pkg import sub` imports the module pkg.sub
            targets = [f'{stem}.{alias.name}'
                       if f'{stem}.{alias.name}' in known else stem
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target not in known and '.' in target:
                target = target.rsplit('.', 1)[0]
            if target in known and target != module:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    known = set(modules)
    return {module: imported_modules(module, path, known)
            for module, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module
    (Tarjan's algorithm)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph[node]):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_is_read() -> None:
    graph = import_graph()
    # arrows the package is known to have, lazy ones included
    assert 'convnext_dense.tasks' in graph['convnext_dense.deploy.runtime']
    assert 'convnext_dense.deploy.runtime' in graph[
        'convnext_dense.apis.inference']
    assert 'convnext_dense.deploy.graph_ops' in graph[
        'convnext_dense.deploy.graphs']
    assert 'convnext_dense.ops' in graph['convnext_dense']
    assert cycles({'a': {'b'}, 'b': {'c'}, 'c': {'a'}, 'd': {'a'}}) == [
        frozenset('abc')]


def test_layers_import_only_downward() -> None:
    upward = [
        f'{module} ({LAYERS[layer(module)][0]}) imports {target} '
        f'({LAYERS[layer(target)][0]})'
        for module, targets in import_graph().items()
        for target in sorted(targets) if layer(target) > layer(module)]
    assert not upward, '\n'.join(upward)


def test_no_import_cycles() -> None:
    modules = set(package_modules())
    for known in KNOWN_CYCLES:
        assert known & modules, (
            f'{sorted(known)} no longer exist: delete the entry from '
            'KNOWN_CYCLES')
    found = [c for c in cycles(import_graph()) if c not in KNOWN_CYCLES]
    assert not found, '\n'.join(' <-> '.join(sorted(c)) for c in found)


# each module in an interpreter of its own. The third-party stack is
# imported once; a forked child imports the package (its __init__ imports
# the ops, checkpoint, models and engine modules: any of them imported on its
# own runs exactly that first), then forks a grandchild per module the
# package's import left out, which imports only that module.
IMPORT_EACH = textwrap.dedent('''
    import os, sys, traceback
    # the third-party stack (none of it imports mmcv.ops, which the
    # package's ops must precede)
    import numpy, torch, torchvision, mmengine.config  # noqa
    import mmengine.model, mmengine.runner, mmcv.transforms  # noqa

    def in_a_child(module):
        """Import module in a forked child; True if it imported."""
        pid = os.fork()
        if pid == 0:
            try:
                __import__(module)
            except BaseException:
                traceback.print_exc()
                os._exit(1)
            os._exit(0)
        return os.waitpid(pid, 0)[1] == 0

    pid = os.fork()
    if pid == 0:
        try:
            import convnext_dense  # noqa
        except BaseException:
            traceback.print_exc()
            print('FAILED convnext_dense')
            os._exit(1)
        imported = [m for m in sys.argv[1:] if m in sys.modules]
        failed = [m for m in sys.argv[1:]
                  if m not in sys.modules and not in_a_child(m)]
        print('WITH THE PACKAGE', len(imported), 'ON THEIR OWN',
              len(sys.argv) - 1 - len(imported), 'FAILED', ' '.join(failed))
        sys.stdout.flush()
        os._exit(1 if failed else 0)
    sys.exit(0 if os.waitpid(pid, 0)[1] == 0 else 1)
''')


@pytest.mark.slow
def test_every_module_imports_on_its_own() -> None:
    modules = sorted(package_modules())
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS='1')
    done = subprocess.run([sys.executable, '-c', IMPORT_EACH, *modules],
                          cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    # both kinds were imported: the package's own tree and the rest
    counts = re.search(r'WITH THE PACKAGE (\d+) ON THEIR OWN (\d+)',
                       done.stdout)
    assert counts and min(map(int, counts.groups())) >= 20, done.stdout


def test_docs_hold_the_same_table() -> None:
    rows = []
    text = (REPO / 'docs' / 'architecture.md').read_text()
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip('|').split('|')]
        if len(cells) == 3 and cells[1].startswith('`'):
            names = [n.strip().strip('`') for n in cells[1].split(',')]
            names = ['__init__' if n == 'convnext_dense/__init__.py' else
                     n.rstrip('/').removesuffix('.py') for n in names]
            rows.append((cells[0], tuple(names)))
    assert tuple(rows) == LAYERS
