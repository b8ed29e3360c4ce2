#!/usr/bin/env bash
# Download the wheels dev/gpu_check.sh installs on an offline GPU machine
# (dev/gpu_check_requirements.txt), for that machine's Python.
#
#   bash dev/fetch_gpu_check_wheels.sh [DEST=.whl] [PYTHON_VERSION=3.12]
#
# About 10 MB. Wheels only, no dependencies (the list names them all).
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${1:-.whl}
PYVER=${2:-3.12}
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
platforms=()
for p in manylinux_2_28 manylinux_2_27 manylinux_2_24 manylinux_2_17 manylinux2014 manylinux1; do
  platforms+=(--platform "${p}_x86_64")
done
mkdir -p "$DEST"
# pip's exit status decides; grep drops the noise of pip configs naming local
# index folders that do not exist
set +e
"$PY" -m pip download --disable-pip-version-check -q --no-deps \
  --only-binary=:all: --python-version "$PYVER" --implementation cp \
  "${platforms[@]}" -d "$DEST" -r dev/gpu_check_requirements.txt 2>&1 \
  | grep -v "^WARNING: Location"
rc=${PIPESTATUS[0]}
set -e
[ "$rc" = 0 ] || exit "$rc"
ls "$DEST"
du -sh "$DEST"
