#!/usr/bin/env bash
# Plain mpirun on one 8-GPU node (no scheduler), from the repository root:
#   bash validation/recipes/mpirun-1node.sh a800      (or h100)
set -uo pipefail
gpu=${1:-a800}
exec bash validation/recipes/measure.sh "$gpu" 1 "measurements-$gpu-1node-$(date -u +%Y%m%dT%H%M).db" \
  mpirun -np 8 --bind-to numa
