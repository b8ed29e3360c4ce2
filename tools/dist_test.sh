#!/usr/bin/env bash
# Evaluate a checkpoint on GPUS GPUs of this node (or of each of NNODES
# nodes) with torchrun (python -m torch.distributed.run; PYTHON picks the
# interpreter).
#
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options ...]
set -euo pipefail
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
exec bash "$(dirname "$0")/dist_launch.sh" test.py "$GPUS" "$CONFIG" \
    "$CHECKPOINT" --launcher pytorch "${@:4}"
