#!/usr/bin/env bash
# One-command install: a virtual environment with torch, torchvision, mmcv,
# mmengine, mmdet, mmsegmentation, timm and this package (editable).
#
#   bash tools/install.sh              # default: mmcv-lite, compiles nothing
#   bash tools/install.sh --mmcv-ops   # mmcv 2.1.0 compiled with its ops
#
# CONVNEXT_DENSE_VENV overrides the folder (./.venv).
#
# Default: mmcv-lite (mmcv's pure-Python build) on the newest torch pair.
# The compiled ops that mmdet and mmseg reach (RoIAlign, NMS, ...) are served
# by torch and torchvision from convnext_dense/ops/, installed in the place of
# mmcv's missing extension when convnext_dense is imported.
#
# --mmcv-ops: every mmcv op, compiled from mmcv 2.1.0's sources (about 15-25
# min on 2 cores) against torch 2.12.1, the newest torch whose headers it
# compiles with (requirements/mmcv_ops.txt). The wheel is cached under
# ~/.cache/convnext_dense/mmcv, keyed by mmcv, torch, Python and CPU/CUDA
# ops, so a second install takes seconds and a wheel is never reused against
# another torch. With nvcc and a visible GPU the CUDA ops are built
# (FORCE_CUDA=1/0 overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
MMCV_OPS=0
for arg in "$@"; do
  case "$arg" in
    --mmcv-ops) MMCV_OPS=1 ;;
    *) echo "usage: bash tools/install.sh [--mmcv-ops]" >&2; exit 2 ;;
  esac
done
VENV=${CONVNEXT_DENSE_VENV:-.venv}
CACHE=${CONVNEXT_DENSE_CACHE:-$HOME/.cache/convnext_dense}
PYTHON=${PYTHON:-python3}

log() { printf '[install %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$(cd "$VENV" && pwd)/bin/python"  # absolute: the mmcv build runs elsewhere
# pip's own exit status decides; grep only drops the noise of machines whose
# pip config names local index folders that do not exist
pip_install() {
  set +e
  "$PY" -m pip install --disable-pip-version-check -q "$@" 2>&1 \
    | grep -v "^WARNING: Location"
  local rc=${PIPESTATUS[0]}
  set -e
  return "$rc"
}
# mmcv and mmcv-lite install the same `mmcv` package: keep exactly one
pip_uninstall() {
  "$PY" -m pip uninstall --disable-pip-version-check -q -y "$@" >/dev/null 2>&1 || true
}

if [ "$MMCV_OPS" = 0 ]; then
  log "torch + torchvision (requirements/torch.txt), mmcv-lite"
  pip_uninstall mmcv
  pip_install -r requirements/torch.txt -r requirements/build.txt \
    -r requirements/mmcv.txt
else
  log "torch + torchvision for compiled mmcv (requirements/mmcv_ops.txt)"
  pip_uninstall mmcv-lite
  pip_install -r requirements/mmcv_ops.txt
  MMCV_VERSION=2.1.0
  if [ -z "${FORCE_CUDA:-}" ]; then
    if command -v nvcc >/dev/null && "$PY" -c "import torch,sys; sys.exit(not torch.cuda.is_available())"; then
      FORCE_CUDA=1
    else
      FORCE_CUDA=0
    fi
  fi
  OPS=$([ "$FORCE_CUDA" = 1 ] && echo cuda || echo cpu)
  KEY=$("$PY" -c "import sys, torch; print(f'mmcv-$MMCV_VERSION-torch-{torch.__version__}-cp{sys.version_info[0]}{sys.version_info[1]}-$OPS')")
  WHEEL_DIR="$CACHE/mmcv/$KEY"
  MARKER="$VENV/.mmcv-build-key"
  if [ "$(cat "$MARKER" 2>/dev/null)" != "$KEY" ] || ! "$PY" -c "import mmcv._ext" 2>/dev/null; then
    if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
      log "compiling mmcv $MMCV_VERSION with $OPS ops (cache key $KEY); about 15-25 min on 2 cores"
      BUILD=$(mktemp -d)
      (cd "$BUILD" && MMCV_WITH_OPS=1 FORCE_CUDA=$FORCE_CUDA MAX_JOBS=${MAX_JOBS:-$(nproc)} \
        "$PY" -m pip wheel --disable-pip-version-check --no-deps \
        --no-build-isolation --no-binary mmcv "mmcv==$MMCV_VERSION" -w "$BUILD/out" \
        > "$BUILD/build.log" 2>&1) \
        || { tail -40 "$BUILD/build.log" >&2; echo "mmcv build failed; log: $BUILD/build.log" >&2; exit 1; }
      mkdir -p "$WHEEL_DIR"
      mv "$BUILD"/out/mmcv-*.whl "$WHEEL_DIR"/
      rm -rf "$BUILD"
    else
      log "mmcv: cached wheel $KEY"
    fi
    pip_install --no-deps --force-reinstall "$WHEEL_DIR"/mmcv-*.whl
    echo "$KEY" > "$MARKER"
  fi
fi

# Not requirements/benchmark.txt (mmpretrain, a reference of the benchmark):
# mmdet.models imports mmpretrain whenever it is installed, and mmpretrain
# 1.2.0 fails to import next to transformers >= 4.57 (a test dependency), which
# would break every detector. Install it into an environment of its own.
# the package's ranges at the exact versions of requirements/constraints.txt
log "mmengine, mmdet, mmsegmentation, onnx, timm, test tools (requirements/)"
pip_install -c requirements/constraints.txt -r requirements/runtime.txt \
  -r requirements/deploy.txt -r requirements/tests.txt
pip_install --no-deps --no-build-isolation -e .
# any import order: a start-up finder serves mmcv._ext from convnext_dense.ops
# where mmcv has no compiled ops (convnext_dense/ops/startup/)
SITE=$("$PY" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
printf '%s\nimport convnext_dense_mmcv_hook\n' "$PWD/convnext_dense/ops/startup" \
  > "$SITE/convnext_dense_mmcv_ext.pth"

"$PY" - <<'PY'
import torch
import convnext_dense  # installs the torch/torchvision ops where mmcv has none
import mmcv, mmdet, mmengine, mmseg, timm, torchvision
from mmcv.ops import nms
from convnext_dense.ops import mmcv_ops_source
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
nms(boxes, torch.tensor([0.9, 0.8]), 0.5)  # the ops really run
print(f'[install] ok: torch {torch.__version__}, torchvision '
      f'{torchvision.__version__}, mmcv {mmcv.__version__} '
      f'(ops: {mmcv_ops_source()}), mmengine {mmengine.__version__}, '
      f'mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, '
      f'timm {timm.__version__}')
PY
"$PY" -m pip check --disable-pip-version-check
