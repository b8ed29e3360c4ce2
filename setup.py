"""convnext_dense: ConvNeXt backbones for mmdet 3.x and mmsegmentation 1.x.

Install with ``bash tools/install.sh``: it pins torch and picks the mmcv
build (mmcv-lite by default; mmcv compiled with its ops with --mmcv-ops),
which pip's dependency resolution cannot choose by itself. So the package
itself only asks for a torch that loads checkpoints weights-only by default
and leaves mmcv to the installer.
"""
from pathlib import Path

from setuptools import find_packages, setup


def read_requirements(name: str) -> list[str]:
    lines = Path(__file__).parent.joinpath('requirements', name).read_text()
    return [line.split('#')[0].strip() for line in lines.splitlines()
            if line.split('#')[0].strip()]


setup(
    name='convnext_dense',
    version='0.1.0',
    description='ConvNeXt backbones for dense prediction with OpenMMLab',
    packages=find_packages(include=['convnext_dense', 'convnext_dense.*']),
    python_requires='>=3.10',
    install_requires=(['torch>=2.6', 'torchvision>=0.21']
                      + read_requirements('runtime.txt')),
    extras_require={'tests': read_requirements('tests.txt'),
                    'benchmark': read_requirements('benchmark.txt'),
                    'deploy': read_requirements('deploy.txt')},
)
