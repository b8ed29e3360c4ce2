"""Training machinery registered under the ``convnext_dense`` scope."""
from .layer_decay import (LayerDecayOptimizerConstructor,
                          check_layer_decay_config)

__all__ = ['LayerDecayOptimizerConstructor', 'check_layer_decay_config']
