#!/usr/bin/env bash
# torchrun (python -m torch.distributed.run; the interpreter: PYTHON, else
# the repository's .venv/bin/python, else python3) of one of the tools on GPUS GPUs of this node, or of each of NNODES nodes;
# what tools/dist_train.sh and tools/dist_test.sh share.
#
#   bash tools/dist_launch.sh TOOL GPUS [TOOL arguments ...]
#
# NNODES (1), NODE_RANK (0), MASTER_ADDR (127.0.0.1) and PORT (29500) come
# from the environment.
set -euo pipefail
source "$(dirname "$0")/launch_common.sh"
check_args 2 "$@"
TOOL=$1
GPUS=$2

PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
exec "$PY" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --master_port="${PORT:-29500}" \
    --nproc_per_node="$GPUS" \
    "$ROOT/tools/$TOOL" "${@:3}"
