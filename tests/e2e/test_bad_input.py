"""What a user sees for bad input to ``tools/train.py``.

One test per case, each running tools/train.py's ``main`` in this process on
the toy detector (configs/demo/cascade_convnext_demo.py) and a tiny toy COCO
set, and asserting

- an error of a clear type whose message names the file or the config key,
- that the work_dir's existing checkpoint and ``last_checkpoint`` are
  byte-for-byte unchanged and no checkpoint was added.

docs/reliability.md lists the same cases with the messages.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
import runpy
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip('mmdet')

from convnext_dense.toy_data import generate_toy_coco  # noqa: E402

# long end-to-end runs: deselect with -m 'not slow'
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / 'configs' / 'demo' / 'cascade_convnext_demo.py')


@pytest.fixture(scope='module')
def toy_coco(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp('toy_coco')
    generate_toy_coco(root, num_train=4, num_val=2, image_size=64, seed=0)
    return root


@pytest.fixture
def data(toy_coco, tmp_path) -> Path:
    """A private copy, for the tests that damage it."""
    return Path(shutil.copytree(toy_coco, tmp_path / 'data'))


@pytest.fixture
def work_dir(tmp_path) -> Path:
    """A work_dir that already holds a checkpoint and the pointer to it."""
    work_dir = tmp_path / 'work_dir'
    work_dir.mkdir()
    (work_dir / 'epoch_1.pth').write_bytes(b'an earlier checkpoint')
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'epoch_1.pth'))
    return work_dir


def snapshot(work_dir: Path) -> dict:
    """Name -> sha256 of the checkpoints and the pointer in work_dir."""
    return {
        path.name: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in work_dir.iterdir()
        if path.suffix == '.pth' or path.name == 'last_checkpoint'
    }


def train(data: Path, work_dir: Path, *options: str,
          resume: str | None = None, num_workers: int = 0) -> None:
    """tools/train.py on the demo config, one epoch on ``data``."""
    root = f'{data}/'
    argv = [DEMO, '--work-dir', str(work_dir)]
    if resume:
        argv += ['--resume', resume]
    argv += [
        '--cfg-options',
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'val_evaluator.ann_file={root}annotations/instances_val2017.json',
        f'train_dataloader.num_workers={num_workers}',
        'train_dataloader.persistent_workers=False',
        'val_dataloader.num_workers=0',
        'val_dataloader.persistent_workers=False',
        'train_cfg.max_epochs=1',
        *options
    ]
    main = runpy.run_path(str(REPO / 'tools' / 'train.py'),
                          run_name='train')['main']
    main(argv)


@pytest.fixture
def expect_untouched(work_dir):
    before = snapshot(work_dir)
    yield
    assert snapshot(work_dir) == before


def test_missing_data_root(toy_coco, work_dir, expect_untouched):
    missing = toy_coco.parent / 'no_such_dir'
    with pytest.raises(FileNotFoundError) as info:
        train(missing, work_dir)
    assert str(info.value).startswith(
        f"train_dataloader.dataset.data_root: directory '{missing}/' does "
        'not exist')


def test_missing_annotation_file(toy_coco, work_dir, expect_untouched):
    with pytest.raises(FileNotFoundError) as info:
        train(toy_coco, work_dir,
              'train_dataloader.dataset.ann_file=annotations/missing.json')
    assert str(info.value) == (
        "train_dataloader.dataset.ann_file: "
        f"'{toy_coco}/annotations/missing.json' does not exist")


def test_truncated_image_found_before_training(data, work_dir,
                                              expect_untouched):
    # every training image cut to its first 100 bytes: the decoded sample
    # of the listed files names one before anything is built
    for image in (data / 'train2017').iterdir():
        image.write_bytes(image.read_bytes()[:100])
    with pytest.raises(OSError) as info:
        train(data, work_dir)
    assert str(info.value).startswith(
        f"train_dataloader.dataset.data_prefix.img: '{data}/train2017/")
    assert 'does not decode as an image' in str(info.value)


@pytest.mark.parametrize('num_workers', [0, 1])
def test_truncated_image(data, work_dir, expect_untouched, num_workers,
                         monkeypatch):
    # every training image cut to its first 100 bytes, and no sample decoded
    # up front (a truncated file outside the sample): the first batch fails
    monkeypatch.setattr('convnext_dense.engine.data_checks.DECODE_SAMPLE', 0)
    for image in (data / 'train2017').iterdir():
        image.write_bytes(image.read_bytes()[:100])
    with pytest.raises(AssertionError) as info:
        train(data, work_dir, num_workers=num_workers)
    # mmcv names the file; from a worker process, inside torch's report
    assert f'failed to load image: {data}/train2017/' in str(info.value)


def test_empty_image_file(data, work_dir, expect_untouched):
    # a 0-byte file (an interrupted download): OpenCV alone says
    # "!buf.empty() in function 'imdecode_'" without the file's name
    image = sorted((data / 'train2017').iterdir())[1]
    image.write_bytes(b'')
    with pytest.raises(OSError) as info:
        train(data, work_dir)
    assert str(info.value).startswith(
        'train_dataloader.dataset.data_prefix.img: 1 empty (0-byte) file(s) '
        f"under '{data}/train2017/', e.g. '{image}'")


def test_annotation_names_missing_image(data, work_dir, expect_untouched):
    for image in (data / 'train2017').iterdir():
        image.unlink()
    with pytest.raises(FileNotFoundError) as info:
        train(data, work_dir)
    # named before anything is built (it used to be the first batch's error)
    assert str(info.value).startswith(
        'train_dataloader.dataset.data_prefix.img: 4 of the 4 files listed '
        f"by '{data}/annotations/instances_train2017.json' do not exist: "
        f"'{data}/train2017/0000000000")


def test_empty_dataset(data, work_dir, expect_untouched):
    ann_file = data / 'annotations' / 'instances_train2017.json'
    coco = json.loads(ann_file.read_text())
    coco.update(images=[], annotations=[])
    ann_file.write_text(json.dumps(coco))
    with pytest.raises(ValueError) as info:
        train(data, work_dir)
    assert str(info.value).startswith(
        f"CocoDataset from '{ann_file}' is empty: no sample is left after "
        'loading and filtering')


def test_unknown_backbone_key(toy_coco, work_dir, expect_untouched):
    # refused before anything is built, the nearest key named
    with pytest.raises(SystemExit) as info:
        train(toy_coco, work_dir, 'model.backbone.not_a_key=1')
    assert info.value.code.startswith(
        'error: --cfg-options model.backbone.not_a_key: '
        'model.backbone.not_a_key is not in the config; model.backbone has: ')
    # let through with --cfg-new-keys, the backbone names it
    with pytest.raises(TypeError,
                       match="unexpected keyword argument 'not_a_key'"):
        train(toy_coco, work_dir, 'model.backbone.not_a_key=1',
              '--cfg-new-keys')


def test_unknown_arch(toy_coco, work_dir, expect_untouched):
    with pytest.raises(ValueError, match="unknown ConvNeXt arch 'tinyy'"):
        train(toy_coco, work_dir, 'model.backbone.arch=tinyy')


def test_pretrained_backbone_of_another_arch(toy_coco, work_dir, tmp_path,
                                             expect_untouched):
    from convnext_dense.models import ConvNeXt
    other = tmp_path / 'convnext_test.pth'
    torch.save(dict(model=ConvNeXt(arch='test').state_dict()), other)
    with pytest.raises(ValueError) as info:
        # the demo has init_cfg=None: _delete_ replaces it by a dict
        train(toy_coco, work_dir, 'model.backbone.init_cfg._delete_=True',
              'model.backbone.init_cfg.type=Pretrained',
              f'model.backbone.init_cfg.checkpoint={other}')
    assert str(other) in str(info.value)


@pytest.fixture(scope='module')
def detector_checkpoint(tmp_path_factory) -> Path:
    """A resumable checkpoint of the demo detector, without training it."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmdet.registry import MODELS
    cfg = Config.fromfile(DEMO)
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    path = tmp_path_factory.mktemp('ckpt') / 'epoch_1.pth'
    torch.save(dict(meta=dict(epoch=1, iter=1), state_dict=model.state_dict(),
                    message_hub={}, optimizer={}), path)
    return path


def test_resume_from_checkpoint_of_another_arch(toy_coco, work_dir,
                                                detector_checkpoint,
                                                expect_untouched):
    with pytest.raises(ValueError) as info:
        train(toy_coco, work_dir, 'model.backbone.arch=test',
              'model.neck.in_channels=[16,32,64,128]',
              resume=str(detector_checkpoint))
    message = str(info.value)
    assert message.startswith(
        f'cannot resume from {detector_checkpoint}: it holds another model')
    # the report tools/test.py and tools/infer.py give
    assert ('tensors with another shape: backbone.downsample_layers.0.0.'
            'weight: file (32, 3, 4, 4) vs model (16, 3, 4, 4)') in message


class _RunsShell:

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command, )


def test_resume_from_crafted_pickle(toy_coco, work_dir, tmp_path,
                                    expect_untouched):
    marker = tmp_path / 'pwned'
    crafted = tmp_path / 'downloaded.pth'
    torch.save(dict(meta=dict(epoch=1), state_dict={},
                    payload=_RunsShell(f'touch {marker}')), crafted)
    with pytest.raises(pickle.UnpicklingError) as info:
        train(toy_coco, work_dir, resume=str(crafted))
    assert str(info.value).startswith(
        f'{crafted} contains objects that are not allowed in a checkpoint')
    assert 'GLOBAL posix.system' in str(info.value)
    assert not marker.exists()


def test_resume_from_truncated_checkpoint(toy_coco, work_dir, tmp_path,
                                          detector_checkpoint,
                                          expect_untouched):
    truncated = tmp_path / 'epoch_2.pth'
    truncated.write_bytes(detector_checkpoint.read_bytes()[:4096])
    with pytest.raises(RuntimeError) as info:
        train(toy_coco, work_dir, resume=str(truncated))
    assert str(info.value).startswith(
        f'{truncated} is not a complete checkpoint')


def test_second_training_in_one_work_dir(toy_coco, work_dir, tmp_path,
                                         expect_untouched):
    """A training holds the work dir: a second one is refused, naming it;
    once the first is killed (-9), its leftover record is named and the
    lock taken over."""
    import signal
    import subprocess
    import sys

    from convnext_dense.engine import work_dir_lock
    holder = subprocess.Popen(
        [sys.executable, '-c',
         'import sys, time\n'
         'from convnext_dense.engine import work_dir_lock\n'
         f'with work_dir_lock({str(work_dir)!r}):\n'
         '    print("locked", flush=True); time.sleep(120)'],
        cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        with pytest.raises(RuntimeError) as info:
            train(toy_coco, work_dir)
        assert str(info.value).startswith(
            f'work dir {work_dir} is in use by another training: process '
            f'{holder.pid} on ')
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    from mmengine.logging import MMLogger
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = MMLogger.get_instance('lock_test', log_level='INFO')
    logger.addHandler(Collect())
    with work_dir_lock(str(work_dir)):  # logs to the current MMLogger
        pass
    assert any(f'process {holder.pid} on ' in message and 'ended without '
               'releasing it (killed?); taking it over' in message
               for message in records), records
    # released, and a clean exit leaves no record to warn about
    assert (work_dir / '.train.lock').read_text() == ''


def test_truncated_annotation_file(data, work_dir, expect_untouched):
    ann_file = data / 'annotations' / 'instances_train2017.json'
    ann_file.write_bytes(ann_file.read_bytes()[:1000])
    # before: json.decoder.JSONDecodeError naming no file
    with pytest.raises(ValueError) as info:
        train(data, work_dir)
    assert str(info.value).startswith(
        f"train_dataloader.dataset.ann_file: '{ann_file}' is not valid "
        'JSON (')


def _damage_boxes(ann_file: Path, how) -> int:
    coco = json.loads(ann_file.read_text())
    for i, ann in enumerate(coco['annotations']):
        how(i, ann)
    ann_file.write_text(json.dumps(coco))
    return len(coco['annotations'])


def test_dropped_boxes_are_counted(data, work_dir):
    ann_file = data / 'annotations' / 'instances_train2017.json'

    def damage(i, ann):
        if i == 0:
            ann['bbox'][2] = -ann['bbox'][2]  # negative width
        elif i == 1:
            ann['category_id'] = 99  # no such class
    total = _damage_boxes(ann_file, damage)
    from convnext_dense.engine import check_annotations
    from mmengine.config import Config
    from mmengine.logging import MMLogger
    records = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    MMLogger.get_instance('boxes_test').addHandler(Collect())
    cfg = Config.fromfile(DEMO)
    cfg.train_dataloader.dataset.data_root = f'{data}/'
    check_annotations(cfg, ('train', ))
    assert records == [
        f"train_dataloader.dataset.ann_file: '{ann_file}': mmdet drops 2 "
        f'of its {total} boxes: 1 of zero or negative width, height or area '
        '(or outside their image), 1 with a category id not among the '
        "classes (3 classes: check metainfo.classes against the file's "
        'categories)']


def test_training_set_without_a_box_is_refused(data, work_dir,
                                               expect_untouched):
    ann_file = data / 'annotations' / 'instances_train2017.json'
    total = _damage_boxes(ann_file,
                          lambda i, ann: ann.update(category_id=99))
    with pytest.raises(ValueError) as info:
        train(data, work_dir)
    assert str(info.value).startswith(
        f"train_dataloader.dataset.ann_file: '{ann_file}': mmdet drops "
        f'{total} of its {total} boxes')
    assert str(info.value).endswith('No box is left to train on.')
