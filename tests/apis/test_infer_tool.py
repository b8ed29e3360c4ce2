"""tools/infer.py refuses, in one line naming the file, what would destroy
inputs or load a bad checkpoint (convnext_dense/apis/inference.py).

- an output folder that is the input folder or inside it, and an output
  file that is an input: refused before anything is built or written;
- a truncated or crafted checkpoint: the reader's message, not a
  traceback.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import torch

pytest.importorskip('mmdet')
pytest.importorskip('mmseg')

from .test_inference import infer_main, write_images, write_model  # noqa


@pytest.fixture(scope='module')
def det_model(tmp_path_factory) -> tuple[str, str]:
    return write_model(tmp_path_factory.mktemp('det'), 'det')


def digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes())
            .hexdigest() for p in sorted(folder.rglob('*')) if p.is_file()}


@pytest.mark.parametrize('out', ['same', 'inside', 'png_next_to_it'])
def test_output_that_would_overwrite_input_is_refused(det_model, tmp_path,
                                                      out):
    config, checkpoint = det_model
    folder = tmp_path / 'images'
    write_images(folder, [(64, 48), (48, 64)])
    # a PNG input painted into its own folder lands on itself
    png = folder / 'photo.png'
    png.write_bytes((folder / 'image_0.jpg').read_bytes())
    before = digest(folder)
    inputs, out_dir, expected = dict(
        same=(folder, folder, f'--out-dir {folder} is the input folder '
              f'{folder}: the painted PNGs would replace input images'),
        inside=(folder, folder / 'sub' / 'vis',
                f'--out-dir {folder}/sub/vis is inside the input folder'),
        png_next_to_it=(png, folder, f'the painting of {png} would '
                        f'overwrite it ({folder}/photo.png)'),
    )[out]
    with pytest.raises(SystemExit) as info:
        infer_main()([config, checkpoint, str(inputs), '--out-dir',
                      str(out_dir)])
    assert str(info.value).startswith(f'error: {expected}')
    assert digest(folder) == before  # nothing written, nothing replaced


def test_jpg_painted_into_its_own_folder_is_allowed(det_model, tmp_path):
    config, checkpoint = det_model
    [image] = write_images(tmp_path, [(64, 48)])
    [out] = infer_main()([config, checkpoint, image, '--out-dir',
                          str(tmp_path)])
    assert out == str(tmp_path / 'image_0.png') and os.path.isfile(out)


class _RunsShell:

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command, )


@pytest.mark.parametrize('damage', ['truncated', 'crafted'])
def test_bad_checkpoint_is_one_line(det_model, tmp_path, damage):
    config, checkpoint = det_model
    [image] = write_images(tmp_path, [(64, 48)])
    bad = tmp_path / 'epoch_1.pth'
    marker = tmp_path / 'pwned'
    if damage == 'truncated':
        bad.write_bytes(Path(checkpoint).read_bytes()[:5000])
        expected = f'error: {bad} is not a complete checkpoint: truncated'
    else:
        torch.save(dict(state_dict={}, meta=_RunsShell(f'touch {marker}')),
                   bad)
        expected = (f'error: {bad} contains objects that are not allowed in '
                    'a checkpoint')
    with pytest.raises(SystemExit) as info:
        infer_main()([config, str(bad), image, '--out-dir',
                      str(tmp_path / 'out')])
    assert str(info.value).startswith(expected)
    assert not marker.exists()


def test_inputs_of_one_name_get_distinct_paintings(det_model, tmp_path):
    """a/x.jpg and a/x.png were both painted to a/x.png, one lost."""
    config, checkpoint = det_model
    folder = tmp_path / 'images'
    write_images(folder, [(64, 48), (48, 64)])
    (folder / 'image_0.png').write_bytes((folder / 'image_0.jpg')
                                         .read_bytes())
    out = tmp_path / 'out'
    written = infer_main()([config, checkpoint, str(folder), '--out-dir',
                            str(out)])
    assert written == [str(out / 'image_0.jpg.png'),
                       str(out / 'image_0.png.png'),
                       str(out / 'sub' / 'image_1.png')]
    assert sorted(str(p) for p in out.rglob('*.png')) == sorted(written)
