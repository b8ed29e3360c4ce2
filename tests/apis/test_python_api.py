"""The Python API: the example of docs/python_api.md runs, and images that
are not (H, W, 3) uint8 BGR are refused with how to convert them.

An RGB float image in [0, 1] used to be accepted silently and gave no
detections.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip('mmdet')

from apis.test_inference import write_model  # noqa: E402
from convnext_dense.apis import Inferencer  # noqa: E402
from convnext_dense.apis.images import BadImageError  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope='module')
def inferencer(tmp_path_factory) -> Inferencer:
    config, checkpoint = write_model(tmp_path_factory.mktemp('m'), 'det')
    return Inferencer(config, checkpoint, max_side=100)


def photo(height: int = 64, width: int = 80) -> np.ndarray:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 60, (height, width, 3), dtype=np.uint8)
    image[10:40, 20:60] = (30, 200, 250)  # BGR: a yellow block
    return image


def test_docs_example_runs(tmp_path, monkeypatch):
    text = (REPO / 'docs' / 'python_api.md').read_text()
    [code] = re.findall(r'```python\n(.*?)```', text, re.S)
    work_dir = tmp_path / 'work_dirs' / 'demo_det'
    work_dir.mkdir(parents=True)
    config, checkpoint = write_model(tmp_path, 'det')
    shutil.copy(config, work_dir / 'demo.py')
    shutil.copy(checkpoint, work_dir / 'epoch_1.pth')
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'epoch_1.pth'))
    cv2.imwrite(str(tmp_path / 'photo.jpg'), photo())
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(code, 'docs/python_api.md', 'exec'), scope)
    assert scope['painted'].shape == (64, 80, 3)
    assert cv2.imread('photo_pred.png').shape == (64, 80, 3)
    assert 'pred_instances' in scope['result']


def test_float_image_in_unit_range_is_refused(inferencer):
    image = photo()[..., ::-1].astype(np.float32) / 255
    with pytest.raises(BadImageError) as info:
        inferencer.predict(image)
    assert str(info.value) == (
        'expected a uint8 image (0-255), got float32; its values lie in '
        '[0, 1]: convert with (img * 255).round().astype(np.uint8)')


@pytest.mark.parametrize('image, says', [
    (np.zeros((8, 8), np.uint8), 'got shape (8, 8) (grayscale'),
    (np.zeros((8, 8, 4), np.uint8), 'got shape (8, 8, 4)'),
    (np.zeros((8, 8, 3), np.int64), 'got int64; convert with img.clip'),
    ([[0]], 'got list'),
])
def test_other_bad_images(inferencer, image, says):
    with pytest.raises(BadImageError, match=re.escape(says)):
        inferencer.predict(image)


def test_rgb_flag_equals_bgr(inferencer):
    bgr = photo()
    expected = inferencer.predict(bgr).pred_instances
    got = inferencer.predict(np.ascontiguousarray(bgr[..., ::-1]),
                             rgb=True).pred_instances
    assert np.array_equal(expected.bboxes.numpy(), got.bboxes.numpy())
    assert np.array_equal(expected.scores.numpy(), got.scores.numpy())


def test_large_image_is_scaled_to_max_side(inferencer, monkeypatch):
    image = photo(150, 300)  # longest side 300 > max_side 100
    logged = []
    monkeypatch.setattr('convnext_dense.apis.inference.print_log',
                        lambda message, **kwargs: logged.append(message))
    result = inferencer.predict(image)
    assert result.ori_shape == (50, 100)
    assert logged == [
        'image of 300x150 is larger than max_side=100: predicted and '
        'painted at 100x50 (set max_side, tools/infer.py --max-side, to '
        'change)']
    assert inferencer.draw(image, result).shape == (50, 100, 3)
