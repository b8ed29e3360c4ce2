"""Model analysis: what the tools in ``tools/analysis/`` compute.

- :mod:`.complexity`: parameters and FLOPs of the configs, against the paper
  (``get_flops.py``).
- :mod:`.curves`: training curves from a work dir's logged scalars
  (``plot_logs.py``).

The modules are imported one by one (``from convnext_dense.analysis.curves
import read_scalars``), so reading a log does not build mmengine models.
"""
