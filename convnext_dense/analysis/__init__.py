"""Model analysis and benchmarks: what the tools in ``tools/analysis/``
compute.

- :mod:`.complexity`: parameters and FLOPs of a model or config
  (``get_flops.py``), with :mod:`.flops_forward` (the forward counted, per
  kind of model) and :mod:`.complexity_report` (against the paper).
- :mod:`.curves`: training curves from a work dir's logged scalars
  (``plot_logs.py``).
- :mod:`.benchmark` (with :mod:`.speed`, :mod:`.memory`, :mod:`.report`):
  the backbone and the detector against timm, mmpretrain and mmdet
  (``benchmark.py``).
- :mod:`.bench_inference`: eager, channels-last, compiled and onnxruntime
  inference (``bench_inference.py``).
- :mod:`.bench_ops`: convnext_dense.ops against compiled mmcv
  (``bench_ops.py``).

Every benchmark times its contenders through one loop,
:func:`.timing.interleaved_rounds`. The modules are imported one by one
(``from convnext_dense.analysis.curves import read_scalars``), so reading a
log does not build mmengine models.
"""
