#!/usr/bin/env bash
# Slurm: two 8-GPU nodes (16 ranks, one per GPU). Submit from the repository root, on a shared
# file system (both nodes run build/bubblesim-hw and write through rank 0 only):
#   sbatch validation/recipes/sbatch-2nodes.sh a800      (or h100)
# The database lands in measurements-<gpu>-2nodes-<job id>.db in the submit directory.
#SBATCH --job-name=bubblesim-measure-2n
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --exclusive
#SBATCH --time=03:00:00
#SBATCH --output=bubblesim-measure-2n-%j.log
set -uo pipefail
gpu=${1:-a800}
exec bash validation/recipes/measure.sh "$gpu" 2 "measurements-$gpu-2nodes-${SLURM_JOB_ID:-local}.db" \
  srun --nodes=2 --ntasks-per-node=8 --gpus-per-node=8 --mpi=pmix
