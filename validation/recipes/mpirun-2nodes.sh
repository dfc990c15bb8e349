#!/usr/bin/env bash
# Plain mpirun over two 8-GPU nodes, from the repository root on a shared file system:
#   bash validation/recipes/mpirun-2nodes.sh a800 HOSTFILE      (or h100)
# HOSTFILE lists the two nodes with 8 slots each (Open MPI: "node1 slots=8"). NCCL finds the
# InfiniBand / RoCE NICs itself; set NCCL_SOCKET_IFNAME / NCCL_IB_HCA here if your fabric needs it.
set -uo pipefail
gpu=${1:-a800}
hosts=${2:?usage: mpirun-2nodes.sh a800|h100 HOSTFILE}
# Pass on the NCCL and bubblesim settings that are set here (mpirun -x of an unset variable is an
# error).
forward=()
for v in NCCL_DEBUG NCCL_SOCKET_IFNAME NCCL_IB_HCA LD_LIBRARY_PATH BUBBLESIM_ATTENTION_KERNEL; do [ -n "${!v:-}" ] && forward+=(-x "$v"); done
exec bash validation/recipes/measure.sh "$gpu" 2 "measurements-$gpu-2nodes-$(date -u +%Y%m%dT%H%M).db" \
  mpirun -np 16 --hostfile "$hosts" --map-by ppr:8:node --bind-to numa "${forward[@]}"
