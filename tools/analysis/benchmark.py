"""Benchmark ConvNeXt-T and Cascade Mask R-CNN T against their references.

    python tools/analysis/benchmark.py [--quick] [--device auto|cpu|cuda]
        [--arch tiny|test] [--parts throughput memory detector compiled]
        [--sizes BxHxW ...] [--dtypes fp32 bf16 fp16] [--threads N]
        [--repeats N] [--strict] [--out docs/benchmarks.md]

On the CPU, and on the GPU when one is present: backbone throughput of ours
against timm and mmpretrain, with_cp's peak-memory cut, one Cascade Mask
R-CNN T training iteration of our config against mmdet's, and (``--parts
... compiled``) the backbones under ``torch.compile``. The page is rewritten
after every row, so a run stopped at a time limit keeps what it measured.
``--help`` lists every option; the logic lives in
:mod:`convnext_dense.analysis.benchmark` (timing, speed, memory, report).
"""
from convnext_dense.analysis.benchmark import main

if __name__ == '__main__':
    main()
