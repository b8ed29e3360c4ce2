#!/usr/bin/env bash
# Evaluate a checkpoint on GPUS GPUs of this node (or of each of NNODES
# nodes) with torchrun (python -m torch.distributed.run). The interpreter:
# PYTHON, else the repository's .venv/bin/python, else python3.
#
#   bash tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py options ...]
set -euo pipefail
source "$(dirname "$0")/launch_common.sh"
check_args 3 "$@"
CONFIG=$1
CHECKPOINT=$2
GPUS=$3
exec bash "$(dirname "$0")/dist_launch.sh" test.py "$GPUS" "$CONFIG" \
    "$CHECKPOINT" --launcher pytorch "${@:4}"
