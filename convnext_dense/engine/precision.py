"""One precision option for training, testing and inference.

``--precision {auto,fp32,bf16,fp16}`` (tools) and ``precision=`` (Python
API) resolve here, for the device the model runs on, into a
:class:`Precision`: the number format chosen and the reason, logged once.

``auto`` picks, in this order:

- bf16 on a CPU with native bf16 instructions (AMX or AVX512-BF16) and on a
  CUDA GPU that supports bf16 (Ampere and later);
- fp16 on another CUDA GPU where the config asks for mixed precision
  (``optim_wrapper.type='AmpOptimWrapper'``, as the paper recipes do);
- fp32 otherwise.

An explicit choice is kept, with a warning where it runs slowly (bf16 on a
CPU without native bf16: torch emulates it) and an error where it cannot
run (bf16 on a GPU without it; fp16 training on a CPU, which needs loss
scaling that mmengine does on GPUs only). fp16 inference on a CPU runs:
torch's CPU autocast supports float16, emulated unless the CPU has
AMX-FP16 or AVX512-FP16.

:func:`apply_training_precision` and :func:`apply_test_precision` put the
choice into a config: the optim wrapper that trains in it (mmengine's
``AmpOptimWrapper`` on GPUs, :class:`~.autocast.AutocastOptimWrapper` on
the CPU, ``OptimWrapper`` for fp32) and the
:class:`~.autocast.AutocastHook` that validates and tests in it.
"""
from __future__ import annotations

import dataclasses
import logging
from contextlib import nullcontext

import torch
from mmengine.logging import print_log

__all__ = ['PRECISIONS', 'Precision', 'PrecisionError',
           'add_precision_argument', 'apply_test_precision',
           'apply_training_precision',
           'cpu_precision_flags', 'resolve_precision']

PRECISIONS = ('auto', 'fp32', 'bf16', 'fp16')
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16,
          'fp16': torch.float16}
_AMP_WRAPPERS = ('AmpOptimWrapper', 'mmengine.AmpOptimWrapper')
_logged: set[str] = set()


class PrecisionError(ValueError):
    """A precision that cannot run on the device (or a misspelt one)."""


@dataclasses.dataclass(frozen=True)
class Precision:
    """A resolved precision.

    Args:
        name: 'fp32', 'bf16' or 'fp16'.
        device_type: 'cpu' or 'cuda'.
        reason: Why it was chosen, for the log.
        emulated: True where the device has no native instructions for it.
    """
    name: str
    device_type: str
    reason: str
    emulated: bool = False

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    @property
    def reduced(self) -> bool:
        """True for bf16 and fp16 (autocast runs)."""
        return self.name != 'fp32'

    def autocast(self):
        """``torch.autocast`` in this precision; a null context for fp32."""
        if not self.reduced:
            return nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def describe(self) -> str:
        return f'precision {self.name} on {self.device_type}: {self.reason}'


def cpu_precision_flags() -> dict[str, bool]:
    """The CPU's native reduced-precision units, as torch detects them
    (cpuinfo; the same on every operating system)."""
    cpu = torch.cpu
    return {
        'amx_bf16': bool(cpu._is_amx_tile_supported()),
        'avx512_bf16': bool(cpu._is_avx512_bf16_supported()),
        'amx_fp16': bool(cpu._is_amx_fp16_supported()),
    }


def _cuda_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether the CUDA device computes in bf16, and its name."""
    index = device.index if device.index is not None else 0
    major, minor = torch.cuda.get_device_capability(index)
    # bf16 tensor cores arrive with Ampere, compute capability 8.0
    name = torch.cuda.get_device_name(index)
    return major >= 8, f'{name} (sm_{major}{minor})'


def resolve_precision(requested: str = 'auto',
                      device: str | torch.device = 'cpu',
                      amp_config: bool = False,
                      training: bool = False,
                      log: bool = True) -> Precision:
    """Resolve ``requested`` for ``device``.

    Args:
        requested: 'auto', 'fp32', 'bf16' or 'fp16'. Defaults to 'auto'.
        device: Where the model runs. Defaults to 'cpu'.
        amp_config: The config asks for mixed precision (its
            ``optim_wrapper`` is an ``AmpOptimWrapper``). Defaults to False.
        training: Resolving for training (fp16 on a CPU is refused: it
            needs loss scaling). Defaults to False.
        log: Log the choice and its reason (each distinct line once per
            process) and warn where it is emulated. Defaults to True.

    Raises:
        PrecisionError: For an unknown name, bf16 on a GPU without it, fp16
            training on a CPU, or a device type other than cpu and cuda.
    """
    if requested not in PRECISIONS:
        raise PrecisionError(f'precision must be one of {PRECISIONS}; got '
                             f'{requested!r}')
    device = torch.device(device)
    if device.type == 'cpu':
        choice = _resolve_cpu(requested, amp_config, training)
    elif device.type == 'cuda':
        choice = _resolve_cuda(requested, amp_config, device)
    else:
        if requested not in ('auto', 'fp32'):
            raise PrecisionError(f'precision {requested} is supported on cpu '
                                 f'and cuda devices; got {device.type}')
        choice = Precision('fp32', device.type,
                           f'auto: {device.type} device (fp32)'
                           if requested == 'auto' else 'asked for')
    if log:
        _log_once(choice)
    return choice


def _resolve_cpu(requested: str, amp_config: bool,
                 training: bool) -> Precision:
    flags = cpu_precision_flags()
    bf16_units = [name for name in ('amx_bf16', 'avx512_bf16')
                  if flags[name]]
    native = ('the CPU has native bf16 (' + ', '.join(bf16_units) + ')'
              if bf16_units else
              'the CPU has no native bf16 (neither AMX nor AVX512-BF16)')
    if requested == 'auto':
        if bf16_units:
            return Precision('bf16', 'cpu', f'auto: {native}')
        return Precision('fp32', 'cpu', f'auto: {native}')
    if requested == 'fp32':
        return Precision('fp32', 'cpu', 'asked for')
    if requested == 'bf16':
        if bf16_units:
            return Precision('bf16', 'cpu', f'asked for; {native}')
        return Precision('bf16', 'cpu', f'asked for; {native}: torch '
                         'emulates it, slower than fp32', emulated=True)
    if training:
        raise PrecisionError(
            'precision fp16 is not available for training on the CPU: fp16 '
            'gradients need loss scaling, which mmengine\'s AmpOptimWrapper '
            'does on GPUs only; use --precision bf16 (no loss scaling '
            'needed) or fp32')
    if flags['amx_fp16']:
        return Precision('fp16', 'cpu', 'asked for; the CPU has native fp16 '
                         '(amx_fp16)')
    return Precision('fp16', 'cpu', 'asked for; the CPU has no native fp16 '
                     '(no AMX-FP16): torch emulates it, slower than fp32',
                     emulated=True)


def _resolve_cuda(requested: str, amp_config: bool,
                  device: torch.device) -> Precision:
    has_bf16, name = _cuda_bf16(device)
    if requested == 'auto':
        if has_bf16:
            return Precision('bf16', 'cuda', f'auto: {name} supports bf16')
        if amp_config:
            return Precision('fp16', 'cuda', f'auto: {name} has no bf16; '
                             'the config asks for mixed precision')
        return Precision('fp32', 'cuda', f'auto: {name} has no bf16 and the '
                         'config asks for no mixed precision')
    if requested == 'bf16' and not has_bf16:
        raise PrecisionError(f'precision bf16 needs a GPU of compute '
                             f'capability 8.0 or newer; {name} has none '
                             '(use fp16 or fp32)')
    return Precision(requested, 'cuda', 'asked for')


def _log_once(choice: Precision) -> None:
    line = choice.describe()
    if line in _logged:
        return
    _logged.add(line)
    print_log(line, logger='current',
              level=logging.WARNING if choice.emulated else logging.INFO)


def add_precision_argument(parser, amp_alias: bool = False) -> None:
    """``--precision`` (and ``--amp``, its alias for fp16) on a tool's
    argument parser."""
    parser.add_argument(
        '--precision', choices=PRECISIONS, default='auto',
        help='number format: auto (default) is bf16 on a CPU with AMX or '
        'AVX512-BF16 and on a GPU with bf16, fp16 on other GPUs where the '
        'config asks for mixed precision, else fp32; the log says which '
        'and why')
    if amp_alias:
        parser.add_argument('--amp', dest='precision', action='store_const',
                            const='fp16',
                            help='the same as --precision fp16')


def wants_amp(cfg) -> bool:
    """Whether the config's optim wrapper asks for mixed precision."""
    wrapper = cfg.get('optim_wrapper') or {}
    return wrapper.get('type', 'OptimWrapper') in _AMP_WRAPPERS


def _training_device() -> str:
    return 'cuda' if torch.cuda.is_available() else 'cpu'


def apply_training_precision(cfg, requested: str = 'auto',
                             device: str | None = None) -> Precision:
    """Make the config train (and validate) in the resolved precision.

    The optim wrapper becomes mmengine's ``AmpOptimWrapper`` on a GPU
    (``dtype`` bf16 or fp16; loss scaling as the config says, dynamic by
    default), :class:`~.autocast.AutocastOptimWrapper` on the CPU (bf16,
    no loss scaling) or ``OptimWrapper`` for fp32 (a config's
    ``AmpOptimWrapper`` settings are dropped). Validation runs in the same
    precision (:func:`apply_test_precision`).

    Args:
        cfg: Config to edit in place.
        requested: See :func:`resolve_precision`. Defaults to 'auto'.
        device: Defaults to None: 'cuda' where available, else 'cpu'.

    Returns:
        The resolved precision.
    """
    choice = resolve_precision(requested, device or _training_device(),
                               amp_config=wants_amp(cfg), training=True)
    wrapper = cfg.optim_wrapper
    amp_only = ('loss_scale', 'dtype', 'use_fsdp')
    if not choice.reduced:
        wrapper.type = 'OptimWrapper'
        for key in amp_only:
            wrapper.pop(key, None)
    elif choice.device_type == 'cuda':
        wrapper.type = 'AmpOptimWrapper'
        wrapper.setdefault('loss_scale', 'dynamic')
        wrapper.dtype = {'bf16': 'bfloat16', 'fp16': 'float16'}[choice.name]
    else:
        for key in amp_only:
            wrapper.pop(key, None)
        wrapper.type = 'convnext_dense.AutocastOptimWrapper'
        wrapper.dtype = 'bfloat16'
    apply_test_precision(cfg, choice)
    return choice


def apply_test_precision(cfg, precision: str | Precision = 'auto',
                         device: str | None = None) -> Precision:
    """Make the config's validation and test loops run in the precision
    (an :class:`~.autocast.AutocastHook` in ``custom_hooks``; none for
    fp32).

    Args:
        cfg: Config to edit in place.
        precision: A name for :func:`resolve_precision`, or a resolved
            :class:`Precision`. Defaults to 'auto'.
        device: Defaults to None: 'cuda' where available, else 'cpu'.

    Returns:
        The resolved precision.
    """
    if not isinstance(precision, Precision):
        precision = resolve_precision(precision,
                                      device or _training_device(),
                                      amp_config=wants_amp(cfg))
    hooks = [hook for hook in cfg.get('custom_hooks') or []
             if 'AutocastHook' not in hook.get('type', '')]
    if precision.reduced:
        hooks.append(dict(type='convnext_dense.AutocastHook',
                          dtype=str(precision.dtype).split('.')[-1]))
    cfg.custom_hooks = hooks
    return precision
