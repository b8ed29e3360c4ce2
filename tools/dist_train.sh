#!/usr/bin/env bash
# Train on GPUS GPUs of this node (or of each of NNODES nodes) with torchrun
# (python -m torch.distributed.run). The interpreter: PYTHON, else the
# repository's .venv/bin/python, else python3.
#
#   bash tools/dist_train.sh CONFIG GPUS [train.py options ...]
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash tools/dist_train.sh CONFIG 8
#
# The paper's detection runs used 8 GPUs x 2 images (batch 16); with fewer
# GPUs add --auto-scale-lr to scale lr by the total batch size.
set -euo pipefail
source "$(dirname "$0")/launch_common.sh"
check_args 2 "$@"
CONFIG=$1
GPUS=$2
exec bash "$(dirname "$0")/dist_launch.sh" train.py "$GPUS" "$CONFIG" \
    --launcher pytorch "${@:3}"
