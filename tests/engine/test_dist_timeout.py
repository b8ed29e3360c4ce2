"""The distributed timeout (convnext_dense/engine/distributed.py) and the
end of a distributed training (convnext_dense/apis/cli.train).

- A frozen (not dead) peer held the surviving rank for torch's default 30
  minutes (gloo): the tools now set ``env_cfg.dist_cfg.timeout`` (600 s
  unless a config or --cfg-options says otherwise), and the value reaches
  ``init_process_group`` on the CPU path and mmengine's GPU path alike.
- A training that raised left its process group to interpreter exit
  (where gloo can abort); now it is destroyed in a ``finally``.
"""
from __future__ import annotations

import datetime
import socket
import uuid

import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config

from convnext_dense.apis.cli import load_config, train
from convnext_dense.engine import distributed
from convnext_dense.engine.distributed import (DIST_TIMEOUT,
                                               setup_cpu_distributed)
from convnext_dense.engine.hooks import NonFiniteLossError
from convnext_dense.paths import REPO_ROOT

from .toy_runner import build_cfg

CONFIG = f'{REPO_ROOT}/configs/demo/upernet_convnext_demo.py'


@pytest.fixture
def one_process(monkeypatch):
    """torchrun's environment for a 1-process group on this machine."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    for key, value in dict(RANK='0', LOCAL_RANK='0', WORLD_SIZE='1',
                           MASTER_ADDR='127.0.0.1',
                           MASTER_PORT=str(port)).items():
        monkeypatch.setenv(key, value)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def recorder(monkeypatch, module) -> list:
    calls = []
    real = module.init_process_group

    def init_process_group(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **dict(kwargs, backend='gloo'))

    monkeypatch.setattr(module, 'init_process_group', init_process_group)
    return calls


def test_tools_set_a_timeout_unless_the_config_does():
    assert DIST_TIMEOUT == 600
    assert load_config(CONFIG).env_cfg.dist_cfg.timeout == 600
    cfg = load_config(CONFIG, {'env_cfg.dist_cfg.timeout': 120})
    assert cfg.env_cfg.dist_cfg.timeout == 120
    assert cfg.env_cfg.cudnn_benchmark is False  # the rest kept


def test_timeout_reaches_init_process_group_on_the_cpu(one_process,
                                                       monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    calls = recorder(monkeypatch, distributed.torch_dist)
    cfg = load_config(CONFIG, launcher='pytorch')
    assert setup_cpu_distributed(cfg)
    assert calls[0]['timeout'] == datetime.timedelta(seconds=600)


def test_timeout_reaches_init_process_group_on_gpus(one_process,
                                                    monkeypatch):
    # mmengine's path (Runner.setup_env -> init_dist), without a GPU
    from mmengine.dist import init_dist
    from mmengine.dist import utils as dist_utils
    monkeypatch.setattr(torch.cuda, 'set_device', lambda device: None)
    calls = recorder(monkeypatch, dist_utils.torch_dist)
    cfg = load_config(CONFIG, launcher='pytorch')
    init_dist('pytorch', **cfg.env_cfg.dist_cfg)
    assert calls[0]['timeout'] == datetime.timedelta(seconds=600)


def test_training_that_raises_closes_the_process_group(one_process,
                                                       tmp_path):
    dist.init_process_group('gloo', rank=0, world_size=1)
    cfg = Config(build_cfg(str(tmp_path), nan_at_iter=0,
                           experiment_name=uuid.uuid4().hex).to_dict())
    with pytest.raises(NonFiniteLossError):
        train(cfg)
    assert not dist.is_initialized()
