"""Mixed precision where mmengine has none: training on the CPU, and
validation and testing in a chosen dtype.

- :class:`AutocastOptimWrapper` trains under ``torch.autocast`` on the
  device of the model's parameters. The parameters (the master weights),
  their gradients and the optimizer state stay float32; only the forward's
  matrix products run in bf16. bf16 has float32's exponent range, so
  gradients need no loss scaling, and the wrapper's state dict is the
  plain ``OptimWrapper``'s: a bf16 checkpoint resumes like an fp32 one.
  mmengine's ``AmpOptimWrapper`` refuses to start without a GPU.
- :class:`AutocastHook` runs the model's validation and test steps under
  ``torch.autocast`` in its dtype and hands their predictions on in float32
  (mmengine's ``fp16`` loop option knows CPU bf16 and CUDA's default dtype
  only, and leaves bf16 tensors that numpy cannot take).

:func:`~.precision.apply_training_precision` and
:func:`~.precision.apply_test_precision` put them into configs.
"""
from __future__ import annotations

import functools
from contextlib import contextmanager

import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.optim import OptimWrapper

from ..registry import HOOKS, OPTIM_WRAPPERS

__all__ = ['AutocastHook', 'AutocastOptimWrapper', 'autocast_step',
           'outputs_to_float32']

_DTYPES = ('bfloat16', 'float16')


def _dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        name = str(name).split('.')[-1]
    if name not in _DTYPES:
        raise ValueError(f'autocast dtype must be one of {_DTYPES}; got '
                         f'{name!r}')
    return getattr(torch, name)


def _device_type(model: nn.Module) -> str:
    parameter = next(model.parameters(), None)
    return parameter.device.type if parameter is not None else 'cpu'


@OPTIM_WRAPPERS.register_module()
class AutocastOptimWrapper(OptimWrapper):
    """``OptimWrapper`` whose forward runs under ``torch.autocast``.

    Configs select it by precision (``tools/train.py --precision bf16`` on
    a CPU), or directly::

        optim_wrapper = dict(type='convnext_dense.AutocastOptimWrapper',
                             dtype='bfloat16', optimizer=dict(...))

    Args:
        dtype: 'bfloat16' (no loss scaling needed). Defaults to 'bfloat16'.
        **kwargs: For ``OptimWrapper`` (optimizer, clip_grad,
            accumulative_counts).
    """

    def __init__(self, dtype: str | torch.dtype = 'bfloat16',
                 **kwargs) -> None:
        cast = _dtype(dtype)
        if cast != torch.bfloat16:
            raise ValueError(
                'AutocastOptimWrapper trains in bfloat16 only: float16 '
                'gradients need loss scaling (mmengine\'s AmpOptimWrapper, '
                'on GPUs)')
        super().__init__(**kwargs)
        self.cast_dtype = cast

    @contextmanager
    def optim_context(self, model: nn.Module):
        with super().optim_context(model), torch.autocast(
                _device_type(model), dtype=self.cast_dtype):
            yield


def outputs_to_float32(outputs):
    """``outputs`` with every bf16/fp16 tensor in it made float32: lists,
    tuples, dicts and mmengine data elements (``DetDataSample``,
    ``InstanceData``, ``PixelData`` ...) are converted in place. Metrics and
    painting convert predictions to numpy, which has no bfloat16."""
    from mmengine.structures import BaseDataElement

    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.dtype in (
            torch.bfloat16, torch.float16) else outputs
    if isinstance(outputs, BaseDataElement):
        for key, value in list(outputs.items()):
            setattr(outputs, key, outputs_to_float32(value))
        return outputs
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(outputs_to_float32(item) for item in outputs)
    if isinstance(outputs, dict):
        return {key: outputs_to_float32(value)
                for key, value in outputs.items()}
    return outputs


def autocast_step(step, dtype: torch.dtype, device_type: str):
    """``step`` (a model's ``val_step``/``test_step``/``predict``) run
    under ``torch.autocast``, its outputs made float32."""

    @functools.wraps(step)
    def run(*args, **kwargs):
        with torch.autocast(device_type, dtype=dtype):
            outputs = step(*args, **kwargs)
        return outputs_to_float32(outputs)

    run.autocast_wrapped = step
    return run


@HOOKS.register_module()
class AutocastHook(Hook):
    """Run the model's validation and test steps under ``torch.autocast``;
    their predictions come out float32, as the metrics expect.

    Args:
        dtype: 'bfloat16' or 'float16'. Defaults to 'bfloat16'.
    """

    def __init__(self, dtype: str = 'bfloat16') -> None:
        self.dtype = _dtype(dtype)

    def _wrap(self, runner) -> None:
        model = runner.model
        device_type = _device_type(getattr(model, 'module', model))
        for name in ('val_step', 'test_step'):
            step = getattr(model, name)
            if not hasattr(step, 'autocast_wrapped'):
                setattr(model, name,
                        autocast_step(step, self.dtype, device_type))

    def _unwrap(self, runner) -> None:
        for name in ('val_step', 'test_step'):
            if hasattr(getattr(runner.model, name), 'autocast_wrapped'):
                delattr(runner.model, name)  # the class's method again

    def before_val(self, runner) -> None:
        self._wrap(runner)

    def after_val(self, runner) -> None:
        self._unwrap(runner)

    def before_test(self, runner) -> None:
        self._wrap(runner)

    def after_test(self, runner) -> None:
        self._unwrap(runner)
