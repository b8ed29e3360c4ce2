"""The precision option (convnext_dense/engine/precision.py): the
resolution table on every kind of machine (CPU flags and GPU capability
mocked), its log line, and what it does to a config's optim wrapper and
hooks."""
from __future__ import annotations

import logging

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger

from convnext_dense.engine import precision as precision_module
from convnext_dense.engine.precision import (PrecisionError,
                                             apply_test_precision,
                                             apply_training_precision,
                                             resolve_precision)

NO_UNITS = dict(amx_bf16=False, avx512_bf16=False, amx_fp16=False)
CPUS = {
    'plain': NO_UNITS,
    'avx512_bf16': dict(NO_UNITS, avx512_bf16=True),
    'amx': dict(NO_UNITS, amx_bf16=True, avx512_bf16=True),
    'amx_fp16': dict(amx_bf16=True, avx512_bf16=True, amx_fp16=True),
}
GPUS = {'ampere': (8, 0), 'turing': (7, 5)}


@pytest.fixture
def machine(monkeypatch):
    """Pretend to be a machine: ``machine(cpu=..., gpu=...)``."""

    def pretend(cpu: str = 'plain', gpu: str = 'ampere') -> None:
        monkeypatch.setattr(precision_module, 'cpu_precision_flags',
                            lambda: dict(CPUS[cpu]))
        monkeypatch.setattr(torch.cuda, 'get_device_capability',
                            lambda index=0: GPUS[gpu])
        monkeypatch.setattr(torch.cuda, 'get_device_name',
                            lambda index=0: f'GPU-{gpu}')
    return pretend


# (requested, device, cpu, gpu, config asks for AMP, training) ->
# (precision, emulated); 'error' where it is refused
TABLE = [
    ('auto', 'cpu', 'plain', None, False, False, ('fp32', False)),
    ('auto', 'cpu', 'plain', None, True, True, ('fp32', False)),
    ('auto', 'cpu', 'avx512_bf16', None, False, False, ('bf16', False)),
    ('auto', 'cpu', 'amx', None, True, True, ('bf16', False)),
    ('fp32', 'cpu', 'amx', None, True, True, ('fp32', False)),
    ('bf16', 'cpu', 'plain', None, False, True, ('bf16', True)),
    ('bf16', 'cpu', 'amx', None, False, True, ('bf16', False)),
    ('fp16', 'cpu', 'plain', None, False, False, ('fp16', True)),
    ('fp16', 'cpu', 'amx_fp16', None, False, False, ('fp16', False)),
    ('fp16', 'cpu', 'amx_fp16', None, True, True, 'error'),
    ('auto', 'cuda', 'plain', 'ampere', False, True, ('bf16', False)),
    ('auto', 'cuda', 'plain', 'ampere', True, True, ('bf16', False)),
    ('auto', 'cuda', 'amx', 'turing', True, True, ('fp16', False)),
    ('auto', 'cuda', 'amx', 'turing', False, True, ('fp32', False)),
    ('bf16', 'cuda', 'plain', 'turing', False, False, 'error'),
    ('bf16', 'cuda:1', 'plain', 'ampere', False, True, ('bf16', False)),
    ('fp16', 'cuda', 'plain', 'turing', False, True, ('fp16', False)),
    ('fp32', 'cuda', 'plain', 'ampere', True, True, ('fp32', False)),
]


@pytest.mark.parametrize('requested,device,cpu,gpu,amp,training,expected',
                         TABLE)
def test_resolution_table(machine, requested, device, cpu, gpu, amp,
                          training, expected):
    machine(cpu=cpu, gpu=gpu or 'ampere')
    if expected == 'error':
        with pytest.raises(PrecisionError, match='precision'):
            resolve_precision(requested, device, amp_config=amp,
                              training=training, log=False)
        return
    choice = resolve_precision(requested, device, amp_config=amp,
                               training=training, log=False)
    assert (choice.name, choice.emulated) == expected
    assert choice.device_type == torch.device(device).type
    assert choice.dtype == {'fp32': torch.float32, 'bf16': torch.bfloat16,
                            'fp16': torch.float16}[choice.name]


def test_unknown_name_and_device_refused():
    with pytest.raises(PrecisionError, match="one of .*got 'half'"):
        resolve_precision('half', log=False)
    with pytest.raises(PrecisionError, match='cpu and cuda devices; got mps'):
        resolve_precision('bf16', 'mps', log=False)
    assert resolve_precision('auto', 'mps', log=False).name == 'fp32'


def test_this_machine_matches_its_flags():
    """Whatever this CPU is, auto follows its flags (torch's cpuinfo)."""
    flags = precision_module.cpu_precision_flags()
    native = flags['amx_bf16'] or flags['avx512_bf16']
    with open('/proc/cpuinfo') as f:
        words = set(f.read().split())
    # torch reports AMX by its tile unit; Linux names amx_bf16 beside it
    assert native == bool(words & {'amx_bf16', 'avx512_bf16'})
    choice = resolve_precision('auto', 'cpu', log=False)
    assert choice.name == ('bf16' if native else 'fp32')


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


def test_log_line_once_and_warning_when_emulated(machine, monkeypatch):
    machine(cpu='plain')
    monkeypatch.setattr(precision_module, '_logged', set())
    handler = _Records()
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        for _ in range(2):
            resolve_precision('bf16', 'cpu')
        resolve_precision('auto', 'cpu')
    finally:
        logger.removeHandler(handler)
    assert [(r.levelno, r.getMessage()) for r in handler.records] == [
        (logging.WARNING, 'precision bf16 on cpu: asked for; the CPU has no '
         'native bf16 (neither AMX nor AVX512-BF16): torch emulates it, '
         'slower than fp32'),
        (logging.INFO, 'precision fp32 on cpu: auto: the CPU has no native '
         'bf16 (neither AMX nor AVX512-BF16)'),
    ]


def _paper_like_config() -> Config:
    return Config(dict(
        optim_wrapper=dict(type='AmpOptimWrapper', dtype='float16',
                           loss_scale='dynamic',
                           optimizer=dict(type='AdamW', lr=1e-4)),
        custom_hooks=[dict(type='convnext_dense.ChannelsLastHook')]))


@pytest.mark.parametrize('requested,cpu,device,wrapper,hook', [
    ('auto', 'plain', 'cpu', dict(type='OptimWrapper'), None),
    ('fp32', 'amx', 'cpu', dict(type='OptimWrapper'), None),
    ('auto', 'amx', 'cpu', dict(type='convnext_dense.AutocastOptimWrapper',
                                dtype='bfloat16'), 'bfloat16'),
    ('bf16', 'plain', 'cpu', dict(type='convnext_dense.AutocastOptimWrapper',
                                  dtype='bfloat16'), 'bfloat16'),
    ('auto', 'plain', 'cuda', dict(type='AmpOptimWrapper', dtype='bfloat16',
                                   loss_scale='dynamic'), 'bfloat16'),
    ('fp16', 'plain', 'cuda', dict(type='AmpOptimWrapper', dtype='float16',
                                   loss_scale='dynamic'), 'float16'),
])
def test_training_precision_sets_wrapper_and_hook(machine, requested, cpu,
                                                  device, wrapper, hook):
    machine(cpu=cpu)
    cfg = _paper_like_config()
    apply_training_precision(cfg, requested, device=device)
    got = dict(cfg.optim_wrapper)
    assert got.pop('optimizer') == dict(type='AdamW', lr=1e-4)
    assert got == wrapper
    expected_hooks = [dict(type='convnext_dense.ChannelsLastHook')]
    if hook:
        expected_hooks.append(dict(type='convnext_dense.AutocastHook',
                                   dtype=hook))
    assert cfg.custom_hooks == expected_hooks
    # applying twice (a resumed run's dumped config) adds no second hook
    apply_test_precision(cfg, requested, device=device)
    assert cfg.custom_hooks == expected_hooks


def test_fp16_training_on_cpu_refused_naming_the_way_out(machine):
    machine(cpu='amx_fp16')
    with pytest.raises(PrecisionError, match='loss scaling.*--precision '
                       'bf16'):
        apply_training_precision(_paper_like_config(), 'fp16', device='cpu')


def test_tools_accept_precision_and_amp_alias():
    import importlib.util
    import os.path as osp

    from convnext_dense.paths import REPO_ROOT

    def tool(name):
        path = osp.join(REPO_ROOT, 'tools', f'{name}.py')
        spec = importlib.util.spec_from_file_location(f'tool_{name}', path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    train = tool('train')
    assert train.parse_args(['c.py']).precision == 'auto'
    assert train.parse_args(['c.py', '--amp']).precision == 'fp16'
    assert train.parse_args(['c.py', '--precision', 'bf16']).precision == \
        'bf16'
    assert tool('test').parse_args(['c.py', 'x.pth', '--precision',
                                    'fp32']).precision == 'fp32'
    assert tool('infer').parse_args(['c.py', 'x.pth', 'in', '--out-dir',
                                     'o']).precision == 'auto'
    assert tool('demo').parse_args(['seg', '--precision',
                                    'bf16']).precision == 'bf16'
    with pytest.raises(SystemExit):
        train.parse_args(['c.py', '--precision', 'half'])
