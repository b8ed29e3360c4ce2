# Recoverable training (docs/reliability.md), shared by every config through
# detection_runtime.py (mmdet) and upernet_convnext.py (mmseg):
# - the first NaN/inf loss stops training with the iteration and every loss
#   term named, before the poisoned weights can reach a checkpoint;
# - random numbers are reseeded from (seed, epoch) and (seed, iteration), so a
#   resumed run continues exactly as the uninterrupted run would have.
# The third piece, convnext_dense.AtomicCheckpointHook (temporary file + fsync
# + rename; `last_checkpoint` replaced after the file it names is complete;
# old checkpoints pruned only after the save; resuming another model refused),
# replaces the checkpoint hook and so must sit in `default_hooks`. mmengine
# refuses a key that two sibling bases both define, and mmdet's
# default_runtime defines default_hooks, so the runtime bases that inherit
# this file set it themselves, from the variable below.
atomic_checkpoint_hook = 'convnext_dense.AtomicCheckpointHook'
custom_hooks = [
    dict(type='convnext_dense.NonFiniteLossHook'),
    dict(type='convnext_dense.ResumableRandomnessHook'),
]
