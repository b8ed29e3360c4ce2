#!/usr/bin/env bash
# Train on GPUS GPUs of this node (or of each of NNODES nodes) with torchrun
# (python -m torch.distributed.run; PYTHON picks the interpreter).
#
#   bash tools/dist_train.sh CONFIG GPUS [train.py options ...]
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 bash tools/dist_train.sh CONFIG 8
#
# The paper's detection runs used 8 GPUs x 2 images (batch 16); with fewer
# GPUs add --auto-scale-lr to scale lr by the total batch size.
set -euo pipefail
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
"${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="$NNODES" \
    --node_rank="$NODE_RANK" \
    --master_addr="$MASTER_ADDR" \
    --master_port="$PORT" \
    --nproc_per_node="$GPUS" \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "${@:3}"
