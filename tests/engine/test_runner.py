"""The config a Runner dumps (convnext_dense/engine/runner.py through
convnext_dense/apis/cli.build_runner): never through a symbolic link, and
a run that does not train leaves the work dir's config alone."""
from __future__ import annotations

import uuid
from pathlib import Path

from mmengine.config import Config

from convnext_dense.apis.cli import build_runner

from .toy_runner import build_cfg


def toy_config(tmp_path: Path) -> Config:
    """The toy run as a config file, so that the dump has a known name."""
    path = tmp_path / 'toy.py'
    build_cfg(str(tmp_path / 'work')).dump(str(path))
    cfg = Config.fromfile(str(path))
    cfg.experiment_name = uuid.uuid4().hex
    return cfg


def test_config_dump_does_not_follow_a_link(tmp_path):
    cfg = toy_config(tmp_path)
    victim = tmp_path / 'notes.txt'
    victim.write_text('keep me')
    (tmp_path / 'work').mkdir()
    dumped = tmp_path / 'work' / 'toy.py'
    dumped.symlink_to(victim)
    build_runner(cfg)
    assert victim.read_text() == 'keep me'
    assert not dumped.is_symlink()
    assert Config.fromfile(str(dumped)).model == cfg.model


def test_run_that_does_not_train_dumps_into_its_log_dir(tmp_path):
    # tools/test.py in a training's work dir replaced the training's config
    cfg = toy_config(tmp_path)
    (tmp_path / 'work').mkdir()
    training = tmp_path / 'work' / 'toy.py'
    training.write_text('# the training dumped this\n')
    runner = build_runner(cfg, training=False)
    assert training.read_text() == '# the training dumped this\n'
    dumped = Path(runner.log_dir) / 'toy.py'
    assert Config.fromfile(str(dumped)).model == cfg.model
