"""convnext_dense: ConvNeXt backbones for mmdet 3.x and mmsegmentation 1.x.

Install with ``bash tools/install.sh``: mmcv must be compiled against the
installed torch, which pip's dependency resolution cannot do by itself.
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
    install_requires=(read_requirements('torch.txt')
                      + read_requirements('mmcv.txt')
                      + read_requirements('runtime.txt')),
    extras_require={'tests': read_requirements('tests.txt'),
                    'benchmark': read_requirements('benchmark.txt')},
)
