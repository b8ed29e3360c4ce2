"""setup.py asks for version ranges; tools/install.sh pins them.

``pip install -e .`` into an existing OpenMMLab environment must keep that
environment's versions, so ``install_requires`` holds ranges only, and the
exact versions the installer uses (requirements/constraints.txt) satisfy
them. The slow test runs pip's resolver, offline, in a scratch virtual
environment that holds an OpenMMLab stack of other patch versions.
"""
from __future__ import annotations

import json
import re
import runpy
import shutil
import subprocess
import venv
import zipfile
from importlib import metadata
from pathlib import Path
from unittest import mock

import pytest
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]


def setup_kwargs() -> dict:
    """What setup.py passes to ``setup()``, without running setuptools."""
    with mock.patch('setuptools.setup') as setup:
        runpy.run_path(str(REPO / 'setup.py'), run_name='__main__')
    return setup.call_args.kwargs


def pins(*names: str) -> dict[str, str]:
    """name -> version of the ``==`` lines of requirement files."""
    found = {}
    for name in names:
        for line in (REPO / 'requirements' / name).read_text().splitlines():
            line = line.split('#')[0].strip()
            if '==' in line:
                req = Requirement(line)
                found[req.name.lower()] = str(req.specifier).lstrip('=')
    return found


def test_install_requires_are_ranges() -> None:
    kwargs = setup_kwargs()
    requirements = list(kwargs['install_requires'])
    for extra in kwargs['extras_require'].values():
        requirements += extra
    names = {Requirement(r).name for r in kwargs['install_requires']}
    assert {'torch', 'mmengine', 'mmdet', 'mmsegmentation'} <= names
    for line in requirements:
        req = Requirement(line)
        assert req.specifier, f'{line}: no version range'
        for spec in req.specifier:
            assert spec.operator not in ('==', '==='), f'{line}: exact pin'


def test_extras() -> None:
    extras = setup_kwargs()['extras_require']
    install = {Requirement(r).name for r in setup_kwargs()['install_requires']}
    deploy = {Requirement(r).name for r in extras['deploy']}
    assert deploy == {'onnx', 'onnxruntime', 'openvino'}
    assert not deploy & install
    assert 'timm' not in install
    assert {'timm', 'onnx', 'onnxruntime', 'pytest', 'ruff'} <= {
        Requirement(r).name for r in extras['tests']}


def test_the_installers_pins_satisfy_the_ranges() -> None:
    pinned = pins('constraints.txt', 'torch.txt')
    kwargs = setup_kwargs()
    requirements = kwargs['install_requires'] + kwargs['extras_require'][
        'tests']
    checked = 0
    for line in requirements:
        req = Requirement(line)
        if req.name.lower() in pinned:
            assert req.specifier.contains(pinned[req.name.lower()]), (
                f'{line} refuses the pinned {pinned[req.name.lower()]}')
            checked += 1
    assert checked >= 12
    # the installer really uses the pins
    install_sh = (REPO / 'tools' / 'install.sh').read_text()
    assert '-c requirements/constraints.txt' in install_sh


# -- pip's resolver in a scratch environment ---------------------------------

# an OpenMMLab environment of other patch (or minor) versions than the pins
EXISTING = {
    'torch': '2.6.0', 'torchvision': '0.21.0', 'mmcv': '2.1.0',
    'mmengine': '0.10.5', 'mmdet': '3.2.0', 'mmsegmentation': '1.2.1',
    'numpy': '1.26.4', 'opencv-python': '4.9.0.80', 'pycocotools': '2.0.7',
    'safetensors': '0.4.3', 'ftfy': '6.1.1', 'regex': '2023.12.25',
}


def dummy_wheel(folder: Path, name: str, version: str) -> None:
    """An empty wheel that installs ``name`` ``version`` (metadata only)."""
    stem = re.sub(r'[-_.]+', '_', name)
    info = f'{stem}-{version}.dist-info'
    files = {
        f'{info}/METADATA': (f'Metadata-Version: 2.1\nName: {name}\n'
                             f'Version: {version}\n'),
        f'{info}/WHEEL': ('Wheel-Version: 1.0\nGenerator: tests\n'
                          'Root-Is-Purelib: true\nTag: py3-none-any\n'),
    }
    files[f'{info}/RECORD'] = ''.join(f'{f},,\n' for f in files) + \
        f'{info}/RECORD,,\n'
    with zipfile.ZipFile(folder / f'{stem}-{version}-py3-none-any.whl',
                         'w') as wheel:
        for path, text in files.items():
            wheel.writestr(path, text)


def pip(python: Path, *args: str) -> subprocess.CompletedProcess:
    # --isolated: no pip configuration of this machine (extra find-links)
    return subprocess.run(
        [str(python), '-m', 'pip', '--isolated', '--disable-pip-version-check',
         *args], capture_output=True, text=True, timeout=300)


def scratch_venv(path: Path) -> Path:
    """A virtual environment with pip and this interpreter's setuptools
    (recent enough to build an editable install's metadata offline)."""
    venv.create(path, with_pip=True, symlinks=True)
    python = path / 'bin' / 'python'
    site = Path(subprocess.run(
        [str(python), '-c', 'import sysconfig; '
         "print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip())
    ours = metadata.distribution('setuptools')
    source = Path(ours.locate_file(''))
    names = ('setuptools', 'pkg_resources', '_distutils_hack',
             Path(ours._path).name)
    for old in [*site.glob('setuptools*'), *(site / n for n in names)]:
        shutil.rmtree(old, ignore_errors=True)
    for name in names:
        if (source / name).exists():
            shutil.copytree(source / name, site / name,
                            ignore=shutil.ignore_patterns('__pycache__'))
    return python


@pytest.mark.slow
def test_pip_install_keeps_an_existing_openmmlab_stack(tmp_path) -> None:
    wheels = tmp_path / 'wheels'
    wheels.mkdir()
    # the index offers the installer's pinned versions too: keeping the
    # existing ones is pip's choice, not a lack of alternatives
    offered = pins('constraints.txt', 'torch.txt')
    for name, version in [*EXISTING.items(), *offered.items()]:
        dummy_wheel(wheels, name, version)
    python = scratch_venv(tmp_path / 'venv')
    offline = ('--no-index', '--find-links', str(wheels))
    done = pip(python, 'install', '-q', *offline,
               *(f'{n}=={v}' for n, v in EXISTING.items()))
    assert done.returncode == 0, done.stderr

    report = tmp_path / 'report.json'
    done = pip(python, 'install', '--dry-run', '--no-build-isolation',
               '--report', str(report), *offline, '-e', str(REPO))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    installs = {item['metadata']['name']: item['metadata']['version']
                for item in json.loads(report.read_text())['install']}
    assert installs == {'convnext_dense': '0.1.0'}

    # the control: asked for the pinned mmdet, the same pip replaces it
    done = pip(python, 'install', '--dry-run', '--report', str(report),
               *offline, f'mmdet=={offered["mmdet"]}')
    assert done.returncode == 0, done.stderr
    installs = {item['metadata']['name']: item['metadata']['version']
                for item in json.loads(report.read_text())['install']}
    assert installs == {'mmdet': offered['mmdet']}
