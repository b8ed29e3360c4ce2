"""Inference and painting (convnext_dense/apis/inference.py, tools/infer.py).

Tiny models are built from configs written here, which inherit the real
Cascade Mask R-CNN T and UperNet T configs and shrink them (arch 'test',
narrow heads, small test resize). Their randomly initialised weights are
saved the way a training run would save them; then the tool reads config
and checkpoint back, runs on generated images and writes PNGs, which are
checked against the predictions the same checkpoint gives.
"""
from __future__ import annotations

import os.path as osp
import runpy
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

from convnext_dense.tasks import build_model, detect_task  # noqa: E402
from convnext_dense.apis.images import (  # noqa: E402
    UnreadableImageError, list_images)
from convnext_dense.apis.inference import Inferencer, run_inference  # noqa
from convnext_dense.apis.model_files import (  # noqa: E402
    resolve_checkpoint, resolve_config)
from convnext_dense.checkpoint.mismatch import (  # noqa: E402
    CheckpointMismatchError)
from mmengine.config import Config  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DET_CLASSES = ('rectangle', 'ellipse', 'triangle')
SEG_CLASSES = ('ground', 'disc', 'box', 'triangle', 'ring')
SEG_PALETTE = [(140, 110, 70), (220, 40, 40), (40, 180, 60), (50, 80, 220),
               (240, 200, 30)]

DET_CONFIG = """
_base_ = '{repo}/configs/cascade_convnext_t.py'
channels = 32
num_classes = {num_classes}
model = dict(
    backbone=dict(arch='test', drop_path_rate=0., init_cfg=None),
    neck=dict(in_channels=[16, 32, 64, 128], out_channels=channels),
    rpn_head=dict(in_channels=channels, feat_channels=channels),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=channels),
        bbox_head=[
            dict(head, in_channels=channels, conv_out_channels=channels,
                 fc_out_channels=64, num_classes=num_classes)
            for head in _base_.model.roi_head.bbox_head
        ],
        mask_roi_extractor=dict(out_channels=channels),
        mask_head=dict(in_channels=channels, conv_out_channels=channels,
                       num_classes=num_classes)),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=30),
                  rcnn=dict(max_per_img=20)))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(96, 96), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                    'scale_factor')),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
"""

SEG_CONFIG = """
_base_ = '{repo}/configs/upernet_convnext_t.py'
num_classes = {num_classes}
model = dict(
    backbone=dict(arch='test', drop_path_rate=0., init_cfg=None),
    decode_head=dict(in_channels=[16, 32, 64, 128], channels=16,
                     num_classes=num_classes),
    auxiliary_head=dict(in_channels=64, channels=16,
                        num_classes=num_classes),
    test_cfg=dict(_delete_=True, mode='whole'))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 64), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
"""


def write_model(tmp_path: Path, task: str, num_classes: int | None = None,
                seed: int = 0) -> tuple[str, str]:
    """Write a tiny config and a checkpoint of its randomly initialised
    model, as a training run would leave them. Returns their paths."""
    template, classes = {
        'det': (DET_CONFIG, DET_CLASSES),
        'seg': (SEG_CONFIG, SEG_CLASSES)
    }[task]
    num_classes = num_classes or len(classes)
    config = tmp_path / f'tiny_{task}_{num_classes}.py'
    config.write_text(template.format(repo=REPO, num_classes=num_classes))
    torch.manual_seed(seed)
    model = build_model(Config.fromfile(str(config)))
    model.init_weights()
    dataset_meta = dict(classes=classes[:num_classes])
    if task == 'seg':
        dataset_meta['palette'] = SEG_PALETTE[:num_classes]
    checkpoint = tmp_path / f'tiny_{task}_{num_classes}.pth'
    torch.save(
        dict(state_dict=model.state_dict(),
             meta=dict(dataset_meta=dataset_meta, epoch=1)), checkpoint)
    return str(config), str(checkpoint)


def write_images(folder: Path, sizes: list[tuple[int, int]]) -> list[str]:
    """Random-texture BGR images of the given (width, height), one of them
    in a subfolder; returns their paths."""
    rng = np.random.default_rng(0)
    paths = []
    for i, (width, height) in enumerate(sizes):
        # smooth colour field plus noise: something for the model to see
        coarse = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.float32)
        image = cv2.resize(coarse, (width, height))
        image += rng.normal(0, 20, size=image.shape)
        sub = folder / ('sub' if i % 2 else '')
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f'image_{i}.jpg'
        cv2.imwrite(str(path), np.clip(image, 0, 255).astype(np.uint8))
        paths.append(str(path))
    return paths


def read_rgb(path: str) -> np.ndarray:
    return cv2.imread(path, cv2.IMREAD_COLOR)[..., ::-1]


def infer_main():
    return runpy.run_path(str(REPO / 'tools' / 'infer.py'),
                          run_name='infer')['main']


@pytest.fixture(scope='module')
def det_model(tmp_path_factory) -> tuple[str, str]:
    return write_model(tmp_path_factory.mktemp('det'), 'det')


@pytest.fixture(scope='module')
def seg_model(tmp_path_factory) -> tuple[str, str]:
    return write_model(tmp_path_factory.mktemp('seg'), 'seg')


def test_detect_task(det_model, seg_model):
    assert detect_task(Config.fromfile(det_model[0])) == 'det'
    assert detect_task(Config.fromfile(seg_model[0])) == 'seg'
    # without a default scope, the registry that knows the model type
    assert detect_task(Config(dict(model=dict(type='CascadeRCNN')))) == 'det'
    assert detect_task(Config(dict(model=dict(type='EncoderDecoder')))) \
        == 'seg'
    with pytest.raises(ValueError, match='detection or segmentation'):
        detect_task(Config(dict(model=dict(type='NoSuchModel'))))


@pytest.mark.slow
def test_detection_folder(det_model, tmp_path):
    config, checkpoint = det_model
    sizes = [(120, 90), (80, 100)]
    images = write_images(tmp_path / 'in', sizes)
    out_dir = tmp_path / 'out'
    written = infer_main()([
        config, checkpoint, str(tmp_path / 'in'), '--out-dir', str(out_dir),
        '--score-thr', '0', '--device', 'cpu'
    ])
    # the folder's layout is kept, each image becomes a PNG of its size
    assert written == [str(out_dir / 'image_0.png'),
                       str(out_dir / 'sub' / 'image_1.png')]
    inferencer = Inferencer(config, checkpoint, score_thr=0.)
    assert inferencer.task == 'det'
    assert inferencer.model.dataset_meta['classes'] == DET_CLASSES
    for image_file, out_file, (width, height) in zip(images, written, sizes):
        painted = read_rgb(out_file)
        original = read_rgb(image_file)
        assert painted.shape == (height, width, 3)
        # the predictions the PNG shows are those of the checkpoint
        result = inferencer.predict(original[..., ::-1].copy())
        instances = result.pred_instances
        assert len(instances) > 0
        assert instances.masks.shape[-2:] == (height, width)
        assert set(instances.labels.tolist()) <= {0, 1, 2}
        changed = np.abs(painted.astype(int) - original).max(axis=2) > 30
        assert changed.mean() > 0.02, 'nothing painted'


def test_detection_threshold_paints_nothing(det_model, tmp_path):
    """Above every score nothing is painted: the PNG is the input."""
    config, checkpoint = det_model
    [image_file] = write_images(tmp_path, [(100, 70)])
    [below] = run_inference(config, checkpoint, image_file,
                            str(tmp_path / 'low'), score_thr=0.,
                            progress=False)
    [above] = run_inference(config, checkpoint, image_file,
                            str(tmp_path / 'high'), score_thr=1.01,
                            progress=False)
    original = read_rgb(image_file)
    np.testing.assert_array_equal(read_rgb(above), original)
    assert not np.array_equal(read_rgb(below), original)


def test_segmentation_overlay(seg_model, tmp_path):
    config, checkpoint = seg_model
    sizes = [(100, 60), (64, 96)]
    images = write_images(tmp_path / 'in', sizes)
    written = infer_main()([
        config, checkpoint, str(tmp_path / 'in'), '--out-dir',
        str(tmp_path / 'out'), '--opacity', '0.5', '--device', 'cpu'
    ])
    assert len(written) == 2
    inferencer = Inferencer(config, checkpoint, opacity=0.5)
    assert inferencer.task == 'seg'
    palette = np.array(SEG_PALETTE)
    for image_file, out_file, (width, height) in zip(images, written, sizes):
        painted = read_rgb(out_file).astype(float)
        original = read_rgb(image_file).astype(float)
        assert painted.shape == (height, width, 3)
        labels = inferencer.predict(
            original[..., ::-1].astype(np.uint8).copy()
        ).pred_sem_seg.data[0].numpy()
        assert labels.shape == (height, width)
        # the overlay is the checkpoint's palette at the predicted labels,
        # blended half and half (class-name text covers a few pixels)
        expected = 0.5 * original + 0.5 * palette[labels]
        close = np.abs(painted - expected).max(axis=2) <= 3
        assert close.mean() > 0.8
        assert np.abs(painted - original).max(axis=2).mean() > 5


def test_class_names_without_checkpoint_meta(det_model, tmp_path):
    """A bare state dict: names from the config's dataset if it lists as
    many classes as the model predicts, else generic ones."""
    config, checkpoint = det_model
    bare = tmp_path / 'bare.pth'
    torch.save({'state_dict': torch.load(checkpoint)['state_dict']}, bare)
    # the tiny config keeps the COCO dataset: 80 names for 3 classes
    inferencer = Inferencer(config, str(bare))
    assert inferencer.model.dataset_meta['classes'] == (
        'class 0', 'class 1', 'class 2')
    assert len(inferencer.model.dataset_meta['palette']) == 3
    named = tmp_path / 'named.py'
    named.write_text(
        Path(config).read_text() +
        "test_dataloader['dataset']['metainfo'] = dict(classes=('a', 'b', "
        "'c'))\n")
    inferencer = Inferencer(str(named), str(bare))
    assert inferencer.model.dataset_meta['classes'] == ('a', 'b', 'c')


def test_work_dir_stands_for_config_and_checkpoint(det_model, tmp_path):
    """A Runner work dir: the dumped config and `last_checkpoint`."""
    config, checkpoint = det_model
    work_dir = tmp_path / 'work_dir'
    work_dir.mkdir()
    (work_dir / 'tiny_det.py').write_text(Path(config).read_text())
    for epoch in (1, 2):
        (work_dir / f'epoch_{epoch}.pth').write_bytes(
            Path(checkpoint).read_bytes())
    # the pointer names the path of the run, which may have moved since
    (work_dir / 'last_checkpoint').write_text('/elsewhere/epoch_1.pth')
    assert resolve_config(str(work_dir)) == str(work_dir / 'tiny_det.py')
    assert resolve_checkpoint(str(work_dir)) == str(work_dir / 'epoch_1.pth')
    [image_file] = write_images(tmp_path, [(64, 64)])
    [out] = run_inference(str(work_dir), str(work_dir), image_file,
                          str(tmp_path / 'out'), progress=False)
    assert osp.isfile(out)


@pytest.mark.slow
def test_checkpoint_of_another_model_is_refused(det_model, seg_model,
                                                tmp_path):
    det_config, det_checkpoint = det_model
    [image_file] = write_images(tmp_path, [(64, 64)])
    # a segmentation checkpoint for a detection config
    with pytest.raises(CheckpointMismatchError,
                       match=r'tensors missing in the file.*not in the model'):
        run_inference(det_config, seg_model[1], image_file,
                      str(tmp_path / 'out'), progress=False)
    # the same detector with another number of classes: shapes differ
    other_config, _ = write_model(tmp_path, 'det', num_classes=2)
    with pytest.raises(CheckpointMismatchError,
                       match=r'with another shape: .*fc_cls.weight: file '
                       r'\(4, 64\) vs model \(3, 64\)'):
        run_inference(other_config, det_checkpoint, image_file,
                      str(tmp_path / 'out'), progress=False)
    assert not (tmp_path / 'out').exists()


def test_missing_and_unreadable_inputs(det_model, tmp_path):
    config, checkpoint = det_model
    main = infer_main()
    with pytest.raises(SystemExit, match='input not found: .*nowhere'):
        main([config, checkpoint, str(tmp_path / 'nowhere'), '--out-dir',
              str(tmp_path / 'out')])
    [image_file] = write_images(tmp_path / 'one', [(64, 48)])
    with pytest.raises(SystemExit, match='checkpoint not found'):
        main([config, str(tmp_path / 'none.pth'), image_file,
              '--out-dir', str(tmp_path / 'out')])
    with pytest.raises(SystemExit, match='config not found'):
        main([str(tmp_path / 'none.py'), checkpoint, image_file,
              '--out-dir', str(tmp_path / 'out')])
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match='no images'):
        list_images(str(empty))

    # a folder with one good and one broken image: the good one is painted,
    # the broken one named
    folder = tmp_path / 'mixed'
    write_images(folder, [(64, 48)])
    (folder / 'broken.png').write_bytes(b'not a png at all')
    with pytest.raises(UnreadableImageError,
                       match=r'(?s)1 of 2 .*cannot read image .*broken\.png'):
        run_inference(config, checkpoint, str(folder), str(tmp_path / 'o'),
                      progress=False)
    assert (tmp_path / 'o' / 'image_0.png').is_file()
    # an explicitly named broken file, through the tool
    with pytest.raises(SystemExit, match=r'cannot read image .*broken\.png'):
        main([config, checkpoint, str(folder / 'broken.png'), '--out-dir',
              str(tmp_path / 'o2')])


@pytest.mark.slow
@pytest.mark.parametrize('task', ['det', 'seg'])
def test_on_demo_work_dir(task, tmp_path, monkeypatch):
    """The embedded demo, trained for one step on a few toy images, then
    painted from its work dir alone (dumped config, `last_checkpoint`,
    an mmengine checkpoint with optimizer and message hub)."""
    from convnext_dense.apis.demo import TASKS, run_demo
    demo = TASKS[task]
    if not (REPO / demo.config).is_file():
        pytest.skip(f'{demo.config} does not exist yet')
    monkeypatch.chdir(tmp_path)  # the demo reads data/ relative to here
    module, function = demo.generator.split(':')
    generate = getattr(__import__(module, fromlist=[function]), function)
    generate(demo.data_root, num_train=4, num_val=2)
    options = {
        'det': {'train_cfg.max_epochs': 1,
                'default_hooks.checkpoint.interval': 1},
        'seg': {'train_cfg.max_iters': 2, 'train_cfg.val_interval': 2,
                'default_hooks.checkpoint.interval': 2},
    }[task]
    run_demo(task, str(tmp_path / 'work_dir'), options)
    images = sorted(
        str(p) for p in (tmp_path / demo.data_root).rglob('*')
        if p.suffix in ('.png', '.jpg') and 'val' in str(p)
        and 'annotations' not in str(p))
    assert len(images) == 2
    written = infer_main()([
        str(tmp_path / 'work_dir'), str(tmp_path / 'work_dir'),
        osp.dirname(images[0]), '--out-dir', str(tmp_path / 'painted'),
        '--score-thr', '0'
    ])
    assert len(written) == 2
    for image, out in zip(images, written):
        assert read_rgb(out).shape == read_rgb(image).shape
    inferencer = Inferencer(str(tmp_path / 'work_dir'),
                            str(tmp_path / 'work_dir'))
    # class names travel in the checkpoint
    expected = DET_CLASSES if task == 'det' else SEG_CLASSES
    assert tuple(inferencer.model.dataset_meta['classes']) == expected
