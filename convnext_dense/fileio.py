"""How the toolkit writes files: never over its own inputs.

:func:`check_outputs` is the one output guard of every tool that writes
(``tools/test.py --show-dir/--out/--work-dir``, ``tools/infer.py``,
``tools/export_onnx.py``, ``tools/convert_checkpoint.py``, the demo,
``tools/train.py``): an output may not be an input (an image folder, an
annotation file, a checkpoint, a config) nor lie inside an input folder.
Paths are compared after resolving symbolic links, and existing files also
by device and inode, so neither a link nor a hard link hides an input.

This module imports nothing from the rest of the package; every layer may
use it.
"""
from __future__ import annotations

import os
import os.path as osp
from typing import Iterable, Optional

# an (what, path) pair: what names the path for a person, e.g. '--show-dir'
# or 'the input folder test_dataloader.dataset.data_prefix.img'
Named = tuple[str, Optional[str]]


class OutputOverwritesInputError(ValueError):
    """An output path would replace an input, or lies inside an input
    folder (where it would mix with the inputs, or a later run would take
    it as one)."""


def same_path(a: str, b: str) -> bool:
    """Whether writing ``a`` would write ``b``: the same path once links
    are resolved, or (both existing) the same file by device and inode."""
    if osp.realpath(a) == osp.realpath(b):
        return True
    try:
        return osp.samefile(a, b)
    except OSError:  # either does not exist (yet)
        return False


def _inside(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def check_outputs(outputs: Iterable[Named],
                  inputs: Iterable[Named],
                  why: str = 'the outputs would replace inputs or mix with '
                  'them. Choose a path outside the inputs') -> None:
    """Refuse outputs that would replace an input or land inside one.

    Call it before any work starts. Entries whose path is None or empty are
    skipped, so optional outputs can be passed as they are.

    Args:
        outputs: ``(what, path)`` of each file or folder the tool will
            write, e.g. ``('--show-dir', args.show_dir)``.
        inputs: ``(what, path)`` of each file or folder it reads, e.g.
            ``('the input folder', 'data/coco/val2017')``.
        why: The rest of the message: what would go wrong, what to do.

    Raises:
        OutputOverwritesInputError: Naming the output, the input and how
            they meet: ``--show-dir X is the input folder Y: ...`` or
            ``... is inside ...``.
    """
    resolved = [(what, path, osp.realpath(path), osp.isdir(path))
                for what, path in inputs if path]
    for what, path in outputs:
        if not path:
            continue
        real = osp.realpath(path)
        for in_what, in_path, in_real, is_dir in resolved:
            if real == in_real or same_path(path, in_path):
                relation = 'is'
            elif is_dir and _inside(real, in_real):
                relation = 'is inside'
            else:
                continue
            raise OutputOverwritesInputError(
                f'{what} {path} {relation} {in_what} {in_path}: {why}')
