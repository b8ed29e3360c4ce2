"""Distributed training on machines without CUDA (CPU processes, gloo).

mmengine 0.10.7 assumes GPUs for ``launcher='pytorch'`` (torchrun,
tools/dist_train.sh) in three places:

1. its process-group init calls ``torch.cuda.set_device(LOCAL_RANK)``
   unconditionally, which fails with "Found no NVIDIA driver on your system";
2. ``env_cfg.dist_cfg.backend`` defaults to ``'nccl'``, which needs GPUs;
3. DDP gets ``device_ids=[LOCAL_RANK]``, which torch refuses for a module on
   the CPU;
4. (torch) ``SyncBatchNorm`` raises "SyncBatchNorm expected input tensor to
   be on GPU" in a multi-process run on the CPU, and the ConvNeXt detection
   heads use SyncBN, as the paper's configs do.

:func:`setup_cpu_distributed` adjusts the config for 2 to 4 and initialises
the process group itself, so that mmengine, which skips its own init when a
group exists, never reaches 1. On GPU machines it does nothing.
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as torch_dist
from mmengine.config import Config
from mmengine.logging import print_log

# norm layer types that synchronise statistics across processes
SYNC_NORMS = ('SyncBN', 'MMSyncBN')
# seconds a rank waits for the others in one collective operation before it
# fails. torch's default is 30 min for gloo (10 for NCCL): a rank whose
# peer froze (not died) sat that long. 10 min still covers the longest
# legitimate wait here, rank 0 alone evaluating COCO or saving a checkpoint;
# a first download of large pretrained weights by rank 0 may need more
DIST_TIMEOUT = 600


def _revert_sync_norms(node) -> int:
    """Replaces SyncBN norm_cfg types by BN in place; returns the count."""
    count = 0
    if isinstance(node, dict):
        if node.get('type') in SYNC_NORMS:
            node['type'] = 'BN'
            count += 1
        for value in node.values():
            count += _revert_sync_norms(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            count += _revert_sync_norms(value)
    return count


def setup_cpu_distributed(cfg: Config) -> bool:
    """Makes ``launcher='pytorch'`` work where CUDA is unavailable.

    Call it after the config is final (``--cfg-options`` merged) and before
    the Runner is built. It acts only when ``cfg.launcher`` is 'pytorch', no
    CUDA device is available and no process group exists yet; then it

    - sets ``env_cfg.dist_cfg.backend`` to 'gloo' (unless the config chose
      another backend than nccl),
    - replaces SyncBN by BN in ``cfg.model`` (each rank then normalises
      with its own batch statistics, as a single process would) and unsets
      ``sync_bn``,
    - gives DDP ``device_ids=None``; without a ``model_wrapper_cfg`` it
      writes the one mmengine would use (``MMDistributedDataParallel``,
      ``broadcast_buffers=False``, the config's ``find_unused_parameters``),
    - initialises the process group from torchrun's environment (``RANK``,
      ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) with the config's
      ``dist_cfg`` (a ``timeout`` in seconds, as mmengine reads it).

    Args:
        cfg (Config): The training config; edited in place.

    Returns:
        bool: Whether it did anything.
    """
    if (cfg.get('launcher') != 'pytorch' or torch.cuda.is_available()
            or (torch_dist.is_available() and torch_dist.is_initialized())):
        return False

    env_cfg = cfg.setdefault('env_cfg', {})
    dist_cfg = dict(env_cfg.get('dist_cfg') or {})
    if dist_cfg.get('backend', 'nccl') == 'nccl':
        dist_cfg['backend'] = 'gloo'
    env_cfg['dist_cfg'] = dist_cfg

    reverted = _revert_sync_norms(cfg.model)
    if cfg.get('sync_bn'):
        cfg.sync_bn = None
        reverted += 1

    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        wrapper = dict(
            type='MMDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = dict(wrapper, device_ids=None)

    kwargs = dict(dist_cfg)
    if kwargs.get('timeout') is not None:
        kwargs['timeout'] = datetime.timedelta(seconds=kwargs['timeout'])
    torch_dist.init_process_group(
        rank=int(os.environ['RANK']),
        world_size=int(os.environ['WORLD_SIZE']),
        **kwargs)
    print_log(
        f'No CUDA device: rank {torch_dist.get_rank()} of '
        f'{torch_dist.get_world_size()} runs on the CPU with the '
        f"{dist_cfg['backend']} backend" +
        (f'; {reverted} SyncBN settings became BN (SyncBN needs GPUs).'
         if reverted else '.'),
        logger='current')
    return True


def set_dist_timeout(cfg: Config) -> None:
    """Give ``env_cfg.dist_cfg.timeout`` (seconds) the default
    :data:`DIST_TIMEOUT` unless the config or ``--cfg-options
    env_cfg.dist_cfg.timeout=SECONDS`` sets it. mmengine's ``init_dist``
    and :func:`setup_cpu_distributed` pass it to ``init_process_group``."""
    env_cfg = dict(cfg.get('env_cfg') or {})
    dist_cfg = dict(env_cfg.get('dist_cfg') or {})
    if dist_cfg.get('timeout') is None:
        dist_cfg['timeout'] = DIST_TIMEOUT
    cfg.env_cfg = dict(env_cfg, dist_cfg=dist_cfg)


def close_distributed(wait: bool = True) -> None:
    """Destroy the default process group, if any (after a barrier: once
    every rank is here, unless ``wait`` is False).

    Left to interpreter exit, gloo's process group can be torn down while its
    threads still run, and a rank then aborts ("terminate called without an
    active exception", SIGABRT) after a successful run: seen once in 2-rank
    CPU runs here. Call it at the end of a distributed job, in a
    ``finally``: after an exception pass ``wait=False``, as the other ranks
    may never reach the barrier.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        if wait:
            dist.barrier()
        dist.destroy_process_group()
