"""The images of ``tools/infer.py``: finding, reading, and where their
paintings go (never over an input)."""
from __future__ import annotations

import os
import os.path as osp

import numpy as np

# what mmcv.imread decodes, lower case
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff',
                    '.webp')


class UnreadableImageError(OSError):
    """An input file could not be decoded as an image."""


class OutputOverwritesInputError(ValueError):
    """An output path would replace an input, or lies inside the input
    folder (where a later run would take the painted images as inputs)."""


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


def output_file(out_dir: str, name: str) -> str:
    """Where the painting of input ``name`` (relative path) goes."""
    return osp.join(out_dir, osp.splitext(name)[0] + '.png')


def check_outputs(images: list[tuple[str, str]], inputs: str,
                  out_dir: str) -> None:
    """Refuse outputs that would overwrite inputs.

    Raises:
        OutputOverwritesInputError: If ``out_dir`` is the input folder or
            inside it, or an output file is one of the inputs (e.g. input
            ``a.png``, output folder the one it is in).
    """
    out_real = osp.realpath(out_dir)
    if osp.isdir(inputs):
        in_real = osp.realpath(inputs)
        if out_real == in_real or out_real.startswith(in_real + os.sep):
            where = 'is' if out_real == in_real else 'is inside'
            raise OutputOverwritesInputError(
                f'--out-dir {out_dir} {where} the input folder {inputs}: '
                'the painted PNGs would replace input images or be taken as '
                'inputs by a later run. Choose a folder outside it')
    sources = {osp.realpath(file): file for file, _ in images}
    for _, name in images:
        out = output_file(out_dir, name)
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
