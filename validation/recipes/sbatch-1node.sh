#!/usr/bin/env bash
# Slurm: one 8-GPU node. Submit from the repository root (built with scripts/build.sh):
#   sbatch validation/recipes/sbatch-1node.sh a800      (or h100)
# The database lands in measurements-<gpu>-1node-<job id>.db in the submit directory.
#SBATCH --job-name=bubblesim-measure-1n
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --exclusive
#SBATCH --time=02:00:00
#SBATCH --output=bubblesim-measure-1n-%j.log
set -uo pipefail
gpu=${1:-a800}
exec bash validation/recipes/measure.sh "$gpu" 1 "measurements-$gpu-1node-${SLURM_JOB_ID:-local}.db" \
  srun --ntasks-per-node=8 --gpus-per-node=8 --mpi=pmix
