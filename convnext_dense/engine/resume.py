"""Which checkpoint ``--resume`` continues from.

mmengine reads ``WORK_DIR/last_checkpoint`` and loads the path written in
it, an absolute path from the time of the save. A work dir copied elsewhere
then resumed from the original directory, whatever that held by then; a
moved one failed ("old/iter_20.pth can not be found") although
``new/iter_20.pth`` was there. :func:`last_checkpoint` prefers the file of
that name inside the work dir and says so when the pointer leads outside.
"""
from __future__ import annotations

import logging
import os.path as osp
from typing import Optional

from mmengine.config import Config
from mmengine.logging import print_log

from convnext_dense.fileio import same_path

POINTER = 'last_checkpoint'


def last_checkpoint(work_dir: str) -> Optional[str]:
    """The checkpoint ``work_dir/last_checkpoint`` names, found in
    ``work_dir`` where it can be.

    The file of the pointed-to name inside ``work_dir`` wins; a warning
    names the pointer's own target when that lies elsewhere (a copied or
    moved work dir). Without such a file the pointed-to path is used if it
    exists (a checkpoint hook's ``out_dir``), also with a warning. Remote
    paths (``s3://`` ...) are returned as written.

    Returns:
        The checkpoint path, or None without a pointer (or an empty one).

    Raises:
        FileNotFoundError: If neither file exists, naming both.
    """
    pointer = osp.join(work_dir, POINTER)
    if not osp.isfile(pointer):
        return None
    with open(pointer, encoding='utf-8') as f:
        named = f.read().strip()
    if not named or '://' in named:
        return named or None
    inside = osp.join(work_dir, osp.basename(named))
    if osp.isfile(inside):
        if not same_path(named, inside):
            print_log(
                f'{pointer} names {named}, outside this work dir (copied or '
                f'moved since it was written?); using {inside}, the file of '
                'that name here', logger='current', level=logging.WARNING)
        return inside
    if osp.isfile(named):
        print_log(
            f'{pointer} names {named}, outside this work dir, which holds '
            f'no {osp.basename(named)}; using it', logger='current',
            level=logging.WARNING)
        return named
    raise FileNotFoundError(
        f'{pointer} names {named}, which does not exist, and {inside} does '
        'not either. Pass the checkpoint to resume from: --resume CKPT')


def prepare_resume(cfg: Config) -> None:
    """Point ``cfg.load_from`` at the checkpoint a ``resume`` without a
    file continues from (:func:`last_checkpoint`).

    Without a checkpoint to resume, the training starts from the beginning
    with a warning (mmengine would log "Auto resumed from the latest
    checkpoint None." and do the same). A config that names its checkpoint
    (``load_from``) is left alone.
    """
    if not cfg.get('resume') or cfg.get('load_from'):
        return
    cfg.load_from = last_checkpoint(cfg.work_dir)
    if cfg.load_from is None:
        cfg.resume = False
        print_log(
            f'--resume: nothing to resume in {cfg.work_dir} (no '
            f'{POINTER} file); training from the start',
            logger='current', level=logging.WARNING)
