"""Training machinery registered under the ``convnext_dense`` scope.

Importing it (``custom_imports=dict(imports=['convnext_dense'])`` does)
registers the layer-decay constructor, the hooks, the bf16 optim wrapper
and the ``atomic_local`` file backend. (Checkpoint reading, the allow-list
that lets ``--resume`` work under ``torch.load(weights_only=True)``
included, is :mod:`convnext_dense.checkpoint.reader`.)
"""
from .annotation_checks import (CheckSegLabels, add_label_checks,
                                check_annotations)
from .atomic_save import AtomicLocalBackend, atomic_write
from .autocast import AutocastHook, AutocastOptimWrapper
from .channels_last import (ChannelsLastDistributedDataParallel,
                            ChannelsLastHook, channels_last_ddp,
                            compile_backbone, guard_mmcv_ops)
from .data_checks import check_dataset_paths, explain_dataset_errors
from .distributed import setup_cpu_distributed
from .hooks import (AtomicCheckpointHook, NonFiniteLossError,
                    NonFiniteLossHook, ResumableRandomnessHook,
                    StrictLoadHook)
from .quiet import QuietRunner  # noqa: F401 (registers DetLocalVisualizer's builder)
from .work_dir_lock import WorkDirLockedError, work_dir_lock
from .layer_decay import (LayerDecayOptimizerConstructor,
                          check_layer_decay_config, layer_decay_param_groups)
from .precision import (PRECISIONS, Precision, PrecisionError,
                        apply_test_precision, apply_training_precision,
                        resolve_precision)

__all__ = [
    'CheckSegLabels', 'add_label_checks', 'check_annotations',
    'AtomicCheckpointHook', 'AtomicLocalBackend', 'AutocastHook',
    'AutocastOptimWrapper', 'PRECISIONS', 'Precision', 'PrecisionError',
    'apply_test_precision', 'apply_training_precision', 'resolve_precision',
    'ChannelsLastDistributedDataParallel', 'ChannelsLastHook',
    'channels_last_ddp',
    'LayerDecayOptimizerConstructor',
    'NonFiniteLossError', 'NonFiniteLossHook', 'ResumableRandomnessHook',
    'StrictLoadHook',
    'atomic_write', 'check_dataset_paths',
    'check_layer_decay_config', 'compile_backbone', 'explain_dataset_errors',
    'guard_mmcv_ops', 'layer_decay_param_groups',
    'setup_cpu_distributed', 'WorkDirLockedError', 'work_dir_lock'
]
