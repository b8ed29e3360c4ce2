"""Every file a run will read is checked before anything is built.

A COCO image the annotation file names but the disk lacks, or an ADE20K
image without its label map, used to crash training at the first batch
that met it. ``check_annotations`` now stats every listed file and decodes
a sample; these tests run it on the demo configs over toy data.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mmengine.config import Config

from convnext_dense.apis.cli import set_data_root
from convnext_dense.engine import check_annotations
from convnext_dense.engine.data_checks import check_listed_files
from convnext_dense.toy_data import generate_toy_coco
from convnext_dense.toy_data.toy_ade import generate_toy_ade

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def toy_coco(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('toy_coco')
    generate_toy_coco(root, num_train=4, num_val=2, image_size=64, seed=0)
    return root


@pytest.fixture(scope='module')
def toy_ade(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('toy_ade')
    generate_toy_ade(root, num_train=3, num_val=1, image_size=64, seed=0)
    return root


def demo_cfg(name: str, data: Path) -> Config:
    cfg = Config.fromfile(str(REPO / 'configs' / 'demo' / name))
    set_data_root(cfg, f'{data}/')
    return cfg


def test_missing_coco_images_are_named_and_counted(toy_coco, tmp_path):
    data = Path(shutil.copytree(toy_coco, tmp_path / 'data'))
    images = sorted((data / 'train2017').iterdir())
    for image in images[:2]:
        image.unlink()
    cfg = demo_cfg('cascade_convnext_demo.py', data)
    with pytest.raises(FileNotFoundError) as info:
        check_annotations(cfg, ('train', 'val'))
    ann_file = data / 'annotations' / 'instances_train2017.json'
    assert str(info.value) == (
        'train_dataloader.dataset.data_prefix.img: 2 of the 4 files listed '
        f"by '{ann_file}' do not exist: '{images[0]}', '{images[1]}'")


def test_many_missing_files_name_the_first_three(tmp_path):
    files = [str(tmp_path / f'{i}.jpg') for i in range(5)]
    with pytest.raises(FileNotFoundError) as info:
        check_listed_files(files, 'key', 'the list')
    assert str(info.value) == (
        "key: 5 of the 5 files listed by the list do not exist: "
        f"'{files[0]}', '{files[1]}', '{files[2]}', ...")


def test_empty_listed_file(tmp_path):
    (tmp_path / 'a.jpg').write_bytes(b'')
    with pytest.raises(OSError, match=r"key: 1 of the 1 files listed by "
                       r"the list are empty \(0 bytes\): '.*a.jpg'"):
        check_listed_files([str(tmp_path / 'a.jpg')], 'key', 'the list')


def test_truncated_image_in_the_sample(toy_coco, tmp_path):
    data = Path(shutil.copytree(toy_coco, tmp_path / 'data'))
    image = sorted((data / 'val2017').iterdir())[0]
    image.write_bytes(image.read_bytes()[:300])
    cfg = demo_cfg('cascade_convnext_demo.py', data)
    with pytest.raises(OSError) as info:
        check_annotations(cfg, ('train', 'val'))
    assert str(info.value).startswith(
        f"val_dataloader.dataset.data_prefix.img: '{image}', listed by "
        f"'{data}/annotations/instances_val2017.json', does not decode")


def test_intact_data_passes(toy_coco, toy_ade):
    check_annotations(demo_cfg('cascade_convnext_demo.py', toy_coco))
    check_annotations(demo_cfg('upernet_convnext_demo.py', toy_ade))


def test_ade_image_without_label_map(toy_ade, tmp_path):
    data = Path(shutil.copytree(toy_ade, tmp_path / 'data'))
    label = sorted((data / 'annotations' / 'training').glob('*.png'))[1]
    label.unlink()
    cfg = demo_cfg('upernet_convnext_demo.py', data)
    with pytest.raises(FileNotFoundError) as info:
        check_annotations(cfg, ('train', 'val'))
    assert str(info.value) == (
        'train_dataloader.dataset.data_prefix.seg_map_path: 1 of the 3 '
        f"files listed by the images under '{data}/images/training' do not "
        f"exist: '{label}'")
