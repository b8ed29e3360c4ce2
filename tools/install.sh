#!/usr/bin/env bash
# One-command install: a virtual environment with torch, mmcv compiled with
# ops, mmengine, mmdet, mmsegmentation, timm and this package (editable).
#
#   bash tools/install.sh            # into ./.venv (CONVNEXT_DENSE_VENV overrides)
#
# mmcv has no wheel for current torch, so it is compiled once (about 15 min on
# 2 cores) and the wheel is cached under ~/.cache/convnext_dense/mmcv, keyed by
# mmcv, torch, Python and CPU/CUDA ops: a second install takes seconds and a
# wheel is never reused against another torch. On a machine with nvcc and a
# visible GPU the CUDA ops are built (FORCE_CUDA=1/0 overrides).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${CONVNEXT_DENSE_VENV:-.venv}
CACHE=${CONVNEXT_DENSE_CACHE:-$HOME/.cache/convnext_dense}
PYTHON=${PYTHON:-python3}
MMCV_VERSION=$(sed -n 's/^mmcv==//p' requirements/mmcv.txt)

log() { printf '[install %s] %s\n' "$(date +%H:%M:%S)" "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
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

log "torch + torchvision (requirements/torch.txt)"
pip_install -r requirements/torch.txt -r requirements/build.txt
"$PY" -c "import torch, torchvision.ops" \
  || { echo "torch/torchvision did not install" >&2; exit 1; }

# ---- mmcv with compiled ops, cached by build key -----------------------------
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
if [ "$(cat "$MARKER" 2>/dev/null)" != "$KEY" ] || ! "$PY" -c "import mmcv.ops" 2>/dev/null; then
  if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
    log "compiling mmcv $MMCV_VERSION with $OPS ops (cache key $KEY); about 15 min on 2 cores"
    BUILD=$(mktemp -d)
    (cd "$BUILD" && MMCV_WITH_OPS=1 FORCE_CUDA=$FORCE_CUDA MAX_JOBS=${MAX_JOBS:-$(nproc)} \
      "$OLDPWD/$PY" -m pip wheel --disable-pip-version-check --no-deps \
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

# benchmark.txt (mmpretrain, the benchmark's reference backbone) only adds
# packages; installed here so the test suite runs the benchmark tool too
log "mmengine, mmdet, mmsegmentation, timm, pycocotools, mmpretrain (requirements/)"
pip_install -r requirements/runtime.txt -r requirements/tests.txt \
  -r requirements/benchmark.txt -r requirements/mmcv.txt
pip_install --no-deps --no-build-isolation -e .

"$PY" - <<'PY'
import mmcv, mmcv.ops, mmdet, mmseg, mmengine, timm, torch, torchvision
import convnext_dense
from mmcv.ops import nms
boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.]])
nms(boxes, torch.tensor([0.9, 0.8]), 0.5)  # compiled ops really run
print(f'[install] ok: torch {torch.__version__}, mmcv {mmcv.__version__} (ops), '
      f'mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, '
      f'mmseg {mmseg.__version__}, timm {timm.__version__}')
PY
