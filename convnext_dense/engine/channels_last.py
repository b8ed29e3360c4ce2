"""Fast paths: channels-last memory format, torch.compile of the backbone.

ConvNeXt's 7x7 depthwise convolution runs through cuDNN only in channels-last
layout, and its channels-first LayerNorms are free permutes there
(docs/reference.md §6). This module makes a whole mmdet/mmseg model run
channels-last, inputs included, and optionally compiles the backbone:

- :func:`convert_to_channels_last` converts the 4-D weights of a model.
- :func:`channels_last_inputs` makes a data preprocessor emit channels-last
  batches (mmdet's ``DetDataPreprocessor`` and mmseg's
  ``SegDataPreprocessor`` stack NCHW tensors).
- :func:`guard_mmcv_ops` protects mmcv's compiled ops, which read their
  input as raw contiguous NCHW memory: measured, ``mmcv.ops.roi_align`` on a
  channels-last map returns wrong values (max abs error 1.3 on unit-normal
  features) without any error. The guard also upcasts bfloat16 inputs, for
  which mmcv 2.1 has no kernel ("ROIAlign_forward" not implemented for
  'BFloat16').
- :func:`compile_backbone` compiles the backbone in place, keeping its
  state-dict keys.
- :class:`ChannelsLastHook` does all of it from a config::

      custom_hooks = [dict(type='convnext_dense.ChannelsLastHook')]
      # or, compiling the backbone too:
      custom_hooks = [dict(type='convnext_dense.ChannelsLastHook',
                           compile=True)]

- :class:`ChannelsLastDistributedDataParallel` converts the weights before
  DDP lays out its gradient buckets, which it does from the parameters'
  strides at wrap time, before any hook runs; :func:`channels_last_ddp`
  selects it for a distributed config with the hook (``tools/train.py``
  calls it), so the hook alone is all a config says.

Mixed precision is set in the optimizer wrapper, not here: fp16 for
detection, ``optim_wrapper = dict(type='AmpOptimWrapper',
dtype='float16')``; bfloat16 for segmentation, ``dtype='bfloat16'``. mmcv 2.1
has no bfloat16 RoIAlign, and mmdet's RoI extractor casts the RoI
coordinates to the feature dtype before RoIAlign, which in bfloat16 (8-bit
mantissa) rounds a coordinate above 512 to a multiple of 4 pixels: use fp16
for detection even though the guard keeps bfloat16 from crashing.
"""
from __future__ import annotations

import logging
from typing import Any, Iterable

import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.config import Config
from mmengine.model import MMDistributedDataParallel, is_model_wrapper
from torch.nn.parallel import DistributedDataParallel
from torch.utils.hooks import RemovableHandle

from convnext_dense.registry import HOOKS, MODEL_WRAPPERS

# the handle attribute that marks a module as already hooked, so applying a
# helper twice (train, then val) registers nothing twice
_INPUTS_HANDLE = '_convnext_dense_channels_last_inputs'
_GUARD_HANDLE = '_convnext_dense_mmcv_guard'


def to_channels_last(value: Any) -> Any:
    """Return ``value`` with every 4-D tensor in it made channels-last.

    Lists, tuples and dicts are walked; anything else is returned unchanged.
    """
    if isinstance(value, torch.Tensor):
        if value.dim() == 4:
            return value.contiguous(memory_format=torch.channels_last)
        return value
    if isinstance(value, dict):
        return {key: to_channels_last(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_channels_last(item) for item in value)
    return value


def convert_to_channels_last(model: nn.Module,
                             module_names: Iterable[str] | None = None
                             ) -> list[str]:
    """Convert the 4-D weights of a model (or of some children) in place.

    Parameters keep their identity (``Module.to`` swaps ``param.data``), so
    an optimizer built before the conversion still updates them.

    Args:
        model: The model, unwrapped from any DDP wrapper.
        module_names: Names of the children to convert, e.g. ``('backbone',
            'neck')``; names the model lacks are skipped. Defaults to None:
            the whole model.

    Returns:
        The names of the converted children (``['']`` for the whole model).
    """
    if module_names is None:
        model.to(memory_format=torch.channels_last)
        return ['']
    converted = []
    for name in module_names:
        child = getattr(model, name, None)
        if isinstance(child, nn.Module):
            child.to(memory_format=torch.channels_last)
            converted.append(name)
    return converted


def _inputs_to_channels_last(module: nn.Module, args: tuple,
                             output: Any) -> Any:
    # a data preprocessor returns dict(inputs=..., data_samples=...)
    if isinstance(output, dict) and 'inputs' in output:
        return {**output, 'inputs': to_channels_last(output['inputs'])}
    return to_channels_last(output)


def channels_last_inputs(data_preprocessor: nn.Module) -> RemovableHandle:
    """Make a data preprocessor emit channels-last image batches.

    A forward hook converts the ``inputs`` of the preprocessor's output (a
    tensor or a list of tensors) after normalisation, padding and batch
    augmentation, so the model sees exactly the NCHW values in another
    layout. Idempotent: a second call returns the first handle.

    Args:
        data_preprocessor: The model's ``data_preprocessor``.

    Returns:
        The hook handle; ``handle.remove()`` undoes it.
    """
    handle = getattr(data_preprocessor, _INPUTS_HANDLE, None)
    if handle is None or handle.id not in data_preprocessor._forward_hooks:
        handle = data_preprocessor.register_forward_hook(
            _inputs_to_channels_last)
        setattr(data_preprocessor, _INPUTS_HANDLE, handle)
    return handle


def _nchw_for_mmcv(module: nn.Module, args: tuple) -> tuple:
    # mmcv kernels index input as contiguous NCHW and have no bf16 kernels
    def fix(arg: Any) -> Any:
        if not isinstance(arg, torch.Tensor):
            return arg
        if arg.dtype == torch.bfloat16:
            arg = arg.float()
        return arg.contiguous()

    return tuple(fix(arg) for arg in args)


def guard_mmcv_ops(model: nn.Module) -> int:
    """Feed every mmcv compiled-op module contiguous, non-bf16 tensors.

    mmcv's ops (RoIAlign, RoIPool, deformable convolutions, ...) read their
    feature maps as raw NCHW memory without checking strides, so a
    channels-last map gives silently wrong results. A forward pre-hook on
    each module of ``mmcv.ops`` makes its tensor arguments contiguous (free
    when they already are) and upcasts bfloat16 to float32. Idempotent.

    Args:
        model: Any model; modules outside ``mmcv.ops`` are left alone.

    Returns:
        The number of mmcv op modules guarded by this call.
    """
    guarded = 0
    for module in model.modules():
        if not type(module).__module__.startswith('mmcv.ops'):
            continue
        handle = getattr(module, _GUARD_HANDLE, None)
        if handle is not None and handle.id in module._forward_pre_hooks:
            continue
        setattr(module, _GUARD_HANDLE,
                module.register_forward_pre_hook(_nchw_for_mmcv))
        guarded += 1
    return guarded


def compile_backbone(backbone: nn.Module, **compile_kwargs: Any) -> None:
    """Compile a backbone's forward in place with ``torch.compile``.

    ``nn.Module.compile`` is used rather than replacing the module by the
    wrapper ``torch.compile`` returns, so that state-dict keys (checkpoints,
    the layer-decay constructor's parameter names) keep no ``_orig_mod.``
    prefix.

    Args:
        backbone: The module to compile.
        **compile_kwargs: Passed to ``torch.compile``; ``dynamic`` defaults
            to True: sizes are symbolic from the first compilation, so
            multi-scale training does not recompile for each new input size.
            (With ``dynamic=None``, PyTorch's default, the first graph is
            specialised to the first size and one recompilation makes it
            dynamic; with ``dynamic=False`` every new size recompiles until
            dynamo's cache limit, then runs eagerly.) Measured with the
            'test' arch: one graph served inputs of 64x96, 96x64 and
            128x128; training mode and a channels-last input each add one
            graph (dynamo guards on ``self.training`` and on strides). A
            square first input costs one more compilation: dynamo gives
            equal sizes one symbol, tying height to width until the first
            non-square input.
    """
    compile_kwargs.setdefault('dynamic', True)
    backbone.compile(**compile_kwargs)


@MODEL_WRAPPERS.register_module()
class ChannelsLastDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper around a model made channels-last first.

    DDP gives every parameter a view into a flat gradient bucket (the bucket
    view) with the strides the parameter has when DDP is built, and copies
    each gradient into it. Converted afterwards (as a hook, which runs after
    the Runner wrapped the model, would), the 4-D weights get channels-last
    gradients and NCHW bucket views: the reducer warns "Grad strides do not
    match bucket view strides" (ConvNeXt#142, timm#2147) and copies across
    layouts until it rebuilds its buckets. Converting here, before
    ``DistributedDataParallel.__init__``, gives the buckets the
    channels-last strides the gradients have.

    Args:
        module: The model to wrap; converted in place.
        module_names: Children to convert, as in
            :func:`convert_to_channels_last`. Defaults to None: the whole
            model.
        **kwargs: For :class:`mmengine.model.MMDistributedDataParallel`
            (``device_ids``, ``broadcast_buffers``, ...).
    """

    def __init__(self,
                 module: nn.Module,
                 module_names: Iterable[str] | None = None,
                 **kwargs: Any) -> None:
        convert_to_channels_last(module, module_names)
        super().__init__(module=module, **kwargs)


# the wrapper types channels_last_ddp may replace by the one above
_PLAIN_DDP = (None, 'MMDistributedDataParallel',
              'mmengine.MMDistributedDataParallel')


def _is_channels_last_hook(hook: Any) -> bool:
    hook_type = hook.get('type') if isinstance(hook, dict) else None
    if isinstance(hook_type, str):
        return hook_type.split('.')[-1] == ChannelsLastHook.__name__
    return hook_type is ChannelsLastHook


def channels_last_ddp(cfg: Config) -> bool:
    """Make a distributed config with ``ChannelsLastHook`` wrap its model
    channels-last.

    Call it after the config is final and before the Runner is built (after
    :func:`~convnext_dense.engine.setup_cpu_distributed`, which may write
    ``model_wrapper_cfg``). It acts when ``cfg.launcher`` is not 'none' and
    ``cfg.custom_hooks`` holds a ``ChannelsLastHook``: a missing
    ``model_wrapper_cfg`` (mmengine's default wrapper, written out with
    mmengine's defaults) or one of type ``MMDistributedDataParallel``
    becomes a :class:`ChannelsLastDistributedDataParallel` with the same
    arguments and the hook's ``module_names``. Another wrapper type is left
    as it is, with a warning (the hook converts after wrapping then).

    Args:
        cfg: The training config; edited in place.

    Returns:
        Whether the model is wrapped channels-last.
    """
    if cfg.get('launcher', 'none') == 'none':
        return False
    hooks = [h for h in cfg.get('custom_hooks') or []
             if _is_channels_last_hook(h)]
    if not hooks:
        return False
    wrapper = cfg.get('model_wrapper_cfg')
    if wrapper is None:
        # what mmengine's Runner.wrap_model builds without a config
        wrapper = dict(
            broadcast_buffers=False,
            find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper = dict(wrapper)
    wrapper_type = wrapper.get('type')
    ours = ChannelsLastDistributedDataParallel
    if wrapper_type in (ours, f'convnext_dense.{ours.__name__}'):
        return True
    if wrapper_type not in _PLAIN_DDP:
        print_log(
            f'ChannelsLastHook: the model wrapper {wrapper_type!r} is not '
            "mmengine's DDP wrapper; left as it is: the weights become "
            'channels-last after wrapping, and DDP may copy gradients '
            'between layouts', logger='current', level=logging.WARNING)
        return False
    module_names = hooks[0].get('module_names')
    cfg.model_wrapper_cfg = dict(
        wrapper, type=f'convnext_dense.{ours.__name__}',
        module_names=None if module_names is None else list(module_names))
    return True


@HOOKS.register_module()
class ChannelsLastHook(Hook):
    """Run a model channels-last end to end, optionally compiling the backbone.

    Before training, validation and testing (idempotent across them), the
    hook converts the model's 4-D weights to channels-last, makes the data
    preprocessor's batches channels-last, guards mmcv's compiled ops (see
    :func:`guard_mmcv_ops`) and, with ``compile``, compiles the backbone.
    The model's parameters keep their identity, so the optimizer built
    before the hook runs still updates them. Under DDP, which the Runner
    builds before any hook runs, the weights must be channels-last before
    wrapping (:class:`ChannelsLastDistributedDataParallel`, which
    ``tools/train.py`` selects through :func:`channels_last_ddp`); under
    another DDP wrapper the hook converts them anyway and logs a warning:
    gradients stay correct, but the reducer copies them between layouts (and
    warns "Grad strides do not match bucket view strides") until it rebuilds
    its buckets after the first iteration (not with
    ``find_unused_parameters=True``).

    Args:
        module_names: Children of the model to convert. Defaults to None:
            the whole model (backbone, neck, heads: cuDNN's tensor-core
            convolutions work in channels-last, so under AMP the neck and
            heads are converted too; mmcv's ops are guarded either way).
        convert_inputs: Make the data preprocessor's output channels-last.
            Defaults to True.
        compile: False, True, or a dict of ``torch.compile`` arguments for
            the backbone (see :func:`compile_backbone`; ``dynamic`` defaults
            to True). Defaults to False.
    """

    priority = 'VERY_HIGH'

    def __init__(self,
                 module_names: Iterable[str] | None = None,
                 convert_inputs: bool = True,
                 compile: bool | dict = False) -> None:
        if not isinstance(compile, (bool, dict)):
            raise TypeError(
                f'compile must be a bool or a dict of torch.compile '
                f'arguments; got {type(compile).__name__}')
        self.module_names = (None if module_names is None else
                             tuple(module_names))
        self.convert_inputs = convert_inputs
        self.compile_kwargs = (
            dict(compile) if isinstance(compile, dict) else
            (dict() if compile else None))
        self._applied: set[int] = set()

    def apply(self, model: nn.Module) -> None:
        """Convert, guard and compile ``model`` (unwrapped if wrapped)."""
        wrapper = model if is_model_wrapper(model) else None
        if wrapper is not None:
            model = model.module
        if id(model) in self._applied:
            return
        strides = [p.stride() for p in model.parameters()]
        converted = convert_to_channels_last(model, self.module_names)
        if (isinstance(wrapper, DistributedDataParallel) and strides != [
                p.stride() for p in model.parameters()]):
            print_log(
                f'ChannelsLastHook: {type(wrapper).__name__} laid out its '
                'gradient buckets for NCHW weights; gradients are copied '
                'between layouts until the buckets are rebuilt. Wrap with '
                "model_wrapper_cfg=dict(type='convnext_dense."
                "ChannelsLastDistributedDataParallel') (tools/train.py "
                'does) to avoid it', logger='current', level=logging.WARNING)
        if self.convert_inputs and isinstance(
                getattr(model, 'data_preprocessor', None), nn.Module):
            channels_last_inputs(model.data_preprocessor)
        guarded = guard_mmcv_ops(model)
        compiled = False
        if self.compile_kwargs is not None:
            backbone = getattr(model, 'backbone', model)
            compile_backbone(backbone, **self.compile_kwargs)
            compiled = True
        self._applied.add(id(model))
        print_log(
            f'ChannelsLastHook: channels-last weights in '
            f'{converted if converted != [""] else "the whole model"}, '
            f'channels-last inputs: {self.convert_inputs}, mmcv ops guarded: '
            f'{guarded}, backbone compiled: {compiled}',
            logger='current')

    def before_train(self, runner) -> None:
        self.apply(runner.model)

    def before_val(self, runner) -> None:
        self.apply(runner.model)

    def before_test(self, runner) -> None:
        self.apply(runner.model)
