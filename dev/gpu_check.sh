#!/usr/bin/env bash
# The GPU checks in one run: the GPU fast-path tests, multi-scale deformable
# attention of convnext_dense/ops/ against mmcv's pure-PyTorch function on
# CUDA (forward and gradients), the demo models trained and tested in bf16
# and fp16, and the benchmark on the GPU, written to OUT/benchmarks_gpu.md
# with the logs.
#
#   bash dev/gpu_check.sh [WHEELS] [OUT=work_dirs/gpu_check]
#
# For a machine with a CUDA GPU and torch, torchvision and timm but no
# network (see dev/gpu_check_requirements.txt): WHEELS is a folder made by
# dev/fetch_gpu_check_wheels.sh, installed into a scratch folder on
# PYTHONPATH. Without WHEELS, the environment's own packages are used
# (e.g. the .venv of tools/install.sh on a GPU machine). Where mmcv has no
# compiled ops (mmcv-lite), the detector part runs on torchvision's RoIAlign
# and NMS (convnext_dense/ops/). About 5-7 min on an H200
# (estimated; never run there yet).
# GPU_CHECK_DRY_RUN=1 runs the same steps on the CPU at toy sizes, to check
# an environment (and this script) before spending GPU time on it.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=${1:-}
OUT=${2:-work_dirs/gpu_check}
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
mkdir -p "$OUT"
log() { printf '[gpu_check %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if [ -n "$WHEELS" ]; then
  SITE=${GPU_CHECK_SITE:-/tmp/convnext_dense_site}
  log "installing $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS into $SITE"
  "$PY" -m pip install --disable-pip-version-check -q --no-index --no-deps \
    --no-compile --no-cache-dir --upgrade --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

"$PY" - <<'PYEOF' | tee "$OUT/environment.txt"
import importlib.util
import os
import platform
import sys

import torch
if not torch.cuda.is_available() and not os.environ.get('GPU_CHECK_DRY_RUN'):
    sys.exit('gpu_check: torch sees no CUDA device')
print('python', platform.python_version(), '| torch', torch.__version__,
      '| CUDA', torch.version.cuda, '| cuDNN', torch.backends.cudnn.version(),
      '|', torch.cuda.get_device_name(0) if torch.cuda.is_available()
      else 'no GPU (dry run)')
for name in ('torchvision', 'timm', 'mmengine', 'mmcv', 'mmdet', 'mmpretrain'):
    try:
        module = __import__(name)
    except ImportError:
        if name != 'mmpretrain':  # the benchmark's optional reference
            raise
        print(f'{name} not installed: the benchmark leaves its columns out')
        continue
    print(f'{name} {module.__version__} ({module.__file__})')
from convnext_dense.ops import mmcv_ops_source
print('mmcv ops from:', mmcv_ops_source())
PYEOF
OPS=$(sed -n 's/^mmcv ops from: //p' "$OUT/environment.txt")

log "pytest -m gpu"
set +e
"$PY" -m pytest -m gpu -n 0 -p no:cacheprovider -ra tests/engine/test_channels_last_gpu.py \
  tests/ops/test_ms_deform_attn_gpu.py 2>&1 | tee "$OUT/pytest_gpu.log"
tests_rc=${PIPESTATUS[0]}
set -e

# The demo models trained and tested in bf16 and fp16 (AmpOptimWrapper on
# the GPU; the dry run: bf16 on the CPU, convnext_dense.AutocastOptimWrapper),
# a few iterations each on the toy data sets, written under OUT/precision;
# the log line of each says which precision ran and why, and its metrics.
PRECISION_DIR="$OUT/precision"
mkdir -p "$PRECISION_DIR"
if [ -n "${GPU_CHECK_DRY_RUN:-}" ]; then
  PRECISIONS=(bf16); SEG_ITERS=2; DET_IMAGES=4
else
  PRECISIONS=(bf16 fp16); SEG_ITERS=100; DET_IMAGES=100
fi
REPO=$PWD
set +e
precision_rc=0
for precision in "${PRECISIONS[@]}"; do
  for task in seg det; do
    log "demo $task: training and test in $precision"
    if [ "$task" = seg ]; then
      OPTIONS=(train_cfg.max_iters=$SEG_ITERS train_cfg.val_interval=$SEG_ITERS
               default_hooks.logger.interval=1 test_dataloader.dataset.indices=4)
    else
      OPTIONS=(train_cfg.max_epochs=1 train_cfg.val_interval=1
               train_dataloader.dataset.indices=$DET_IMAGES
               default_hooks.logger.interval=1 test_dataloader.dataset.indices=4)
    fi
    (cd "$PRECISION_DIR" && "$PY" "$REPO/tools/demo.py" "$task" \
       --precision "$precision" --work-dir "work_dirs/${task}_$precision" \
       --cfg-options "${OPTIONS[@]}" --cfg-new-keys) \
       > "$PRECISION_DIR/${task}_$precision.log" 2>&1
    rc=$?
    [ "$rc" -ne 0 ] && precision_rc=$rc
    grep -h -E "precision (bf16|fp16|fp32) on|demo metrics" \
      "$PRECISION_DIR/${task}_$precision.log" | sed "s/^/[$task $precision rc=$rc] /" \
      | tee -a "$PRECISION_DIR/summary.txt"
  done
done
set -e
[ "$tests_rc" -eq 0 ] && tests_rc=$precision_rc

# 224x224 at batch 32 (the task) and 256 (a throughput batch), 800x1216 at
# batch 2; bf16 first (the 6000 img/s target), then fp16 and fp32 (TF32);
# NCHW and channels-last. The page is rewritten after every row.
if [ -n "${GPU_CHECK_DRY_RUN:-}" ]; then
  SETTINGS=(--device cpu --arch test --sizes 1x32x32 --mem-size 1x32x32
            --det-size 1x64x64 --det-rois 8 --warmup 0 --repeats 1 --inner 1
            --compiled-sizes 2x32x32 --compile-backend eager)
else
  SETTINGS=(--device cuda --sizes 32x224x224 256x224x224 2x800x1216
            --warmup 2 --repeats 5 --inner 3)
fi
# Parts: those of the targets, then ours and timm compiled (inductor, bf16
# channels-last forward at 224), an extra placed last so that a time limit
# takes it first
SETTINGS+=(--dtypes bf16 fp16 fp32 --parts throughput memory detector compiled)
log "benchmark (mmcv ops: $OPS)"
"$PY" tools/analysis/benchmark.py "${SETTINGS[@]}" --strict \
  --out "$OUT/benchmarks_gpu.md" 2>&1 | tee "$OUT/benchmark.log"
log "pytest exit status $tests_rc; page: $OUT/benchmarks_gpu.md"
exit "$tests_rc"
