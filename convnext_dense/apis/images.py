"""The images of ``tools/infer.py``: finding, reading, and where their
paintings go (never over an input)."""
from __future__ import annotations

import os
import os.path as osp

import numpy as np

from convnext_dense.fileio import (OutputOverwritesInputError,  # noqa: F401
                                   check_outputs as check_paths)

# what mmcv.imread decodes, lower case
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff',
                    '.webp')


class UnreadableImageError(OSError):
    """An input file could not be decoded as an image."""


def list_images(path: str) -> list[tuple[str, str]]:
    """The images to run on: ``(file, name relative to the input)`` pairs.

    A file is taken as it is (whatever its extension); a directory is
    searched recursively for image extensions, in sorted order.

    Raises:
        FileNotFoundError: If ``path`` does not exist or a directory holds
            no image.
    """
    if osp.isfile(path):
        return [(path, osp.basename(path))]
    if not osp.isdir(path):
        raise FileNotFoundError(f'input not found: {path}')
    images = []
    for root, _, files in os.walk(path):
        for name in files:
            if name.lower().endswith(IMAGE_EXTENSIONS):
                file = osp.join(root, name)
                images.append((file, osp.relpath(file, path)))
    if not images:
        raise FileNotFoundError(
            f'no images ({", ".join(IMAGE_EXTENSIONS)}) under {path}')
    return sorted(images, key=lambda item: item[1])


def output_files(out_dir: str, images: list[tuple[str, str]]) -> list[str]:
    """Where the painting of each input (``(file, relative name)``, as
    :func:`list_images` gives them) goes: ``out_dir/sub/name.png``.

    Inputs that would share a name (``a/x.jpg`` and ``a/x.png``) keep their
    extension instead (``a/x.jpg.png``, ``a/x.png.png``), so no painting
    replaces another.

    Raises:
        OutputOverwritesInputError: If two outputs are still the same (an
            input named ``x.jpg.png`` next to ``x.jpg`` and ``x.png``).
    """
    plain = [osp.splitext(name)[0] + '.png' for _, name in images]
    counts: dict[str, int] = {}
    for name in plain:
        counts[name] = counts.get(name, 0) + 1
    outputs = [osp.join(out_dir, short if counts[short] == 1 else name +
                        '.png')
               for short, (_, name) in zip(plain, images)]
    seen: dict[str, str] = {}
    for out, (file, _) in zip(outputs, images):
        if out in seen:
            raise OutputOverwritesInputError(
                f'{seen[out]} and {file} would both be painted to {out}; '
                'rename one of them')
        seen[out] = file
    return outputs


def check_outputs(images: list[tuple[str, str]], inputs: str,
                  out_dir: str, other_inputs: tuple = ()) -> None:
    """Refuse outputs that would overwrite inputs
    (:func:`convnext_dense.fileio.check_outputs`).

    Args:
        images: :func:`list_images` of ``inputs``.
        inputs: The input image or folder.
        out_dir: Where the paintings go.
        other_inputs: More ``(what, path)`` inputs: the config and
            checkpoint files.

    Raises:
        OutputOverwritesInputError: If ``out_dir`` is the input folder or
            inside it (or inside another input), an output file is one
            of the inputs (e.g. input ``a.png``, output folder the one it
            is in), or two inputs would be painted to one file.
    """
    folder = [('the input folder', inputs)] if osp.isdir(inputs) else []
    check_paths([('--out-dir', out_dir)], [*folder, *other_inputs],
                why='the painted PNGs would replace input images or be '
                'taken as inputs by a later run. Choose a folder outside it')
    # real paths, as check_paths compares them (one dict: folders of
    # thousands of images)
    sources = {osp.realpath(file): file for file, _ in images}
    for out in output_files(out_dir, images):
        if osp.realpath(out) in sources:
            raise OutputOverwritesInputError(
                f'the painting of {sources[osp.realpath(out)]} would '
                f'overwrite it ({out}). Choose another --out-dir')


def read_image(path: str) -> np.ndarray:
    """Decode an image file to an (H, W, 3) BGR uint8 array.

    Raises:
        UnreadableImageError: Naming the file, if it cannot be decoded.
    """
    import mmcv
    try:
        image = mmcv.imread(path, flag='color', channel_order='bgr')
    except Exception as err:  # mmcv raises several types for bad files
        raise UnreadableImageError(
            f'cannot read image {path}: {type(err).__name__}: {err}') from err
    if image is None:
        raise UnreadableImageError(
            f'cannot read image {path}: not a decodable image file')
    return image


# the longest side an image is predicted at (apis.Inferencer's max_side):
# at 6000x4000 a detector's masks and a segmentor's logits are pasted at
# full size (gigabytes for 150 classes); the models see at most 2048 anyway
MAX_SIDE = 4096


class BadImageError(ValueError):
    """An in-memory image that is not (H, W, 3) uint8."""


def check_image(image, rgb: bool = False) -> np.ndarray:
    """The BGR uint8 (H, W, 3) array the models take, from ``image``.

    Args:
        image: An (H, W, 3) uint8 array, BGR as ``cv2.imread`` and
            ``mmcv.imread`` give it (PIL, timm and Hugging Face give RGB:
            pass ``rgb=True``).
        rgb: ``image`` is RGB; it is flipped to BGR. Defaults to False.

    Raises:
        BadImageError: For another type, shape or dtype, saying how to
            convert (a float image in [0, 1] would otherwise be taken as
            nearly black and give no detections).
    """
    if not isinstance(image, np.ndarray):
        raise BadImageError(
            f'expected an (H, W, 3) uint8 numpy array, got '
            f'{type(image).__name__} (a PIL image: np.asarray(img) and '
            'rgb=True)')
    if image.ndim != 3 or image.shape[2] != 3:
        raise BadImageError(
            f'expected an (H, W, 3) image, got shape {image.shape} '
            '(grayscale: np.stack([img] * 3, -1); RGBA: img[..., :3]; '
            'one image at a time, not a batch)')
    if image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.size and \
                float(image.min()) >= 0 and float(image.max()) <= 1:
            hint = ('its values lie in [0, 1]: convert with '
                    '(img * 255).round().astype(np.uint8)')
        else:
            hint = 'convert with img.clip(0, 255).astype(np.uint8)'
        raise BadImageError(
            f'expected a uint8 image (0-255), got {image.dtype}; {hint}')
    return np.ascontiguousarray(image[..., ::-1]) if rgb else image


def cap_size(image: np.ndarray, max_side: int | None) -> np.ndarray:
    """``image`` scaled down so its longest side is at most ``max_side``
    (None: unchanged)."""
    height, width = image.shape[:2]
    if not max_side or max(height, width) <= max_side:
        return image
    import cv2
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)
