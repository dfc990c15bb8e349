#!/usr/bin/env bash
# The GPU checks, for a machine with a GPU that cannot build the project (no registry, none of
# its Debian packages): runs the GPU tests built here, which need only the CUDA runtime, cuBLAS
# and NCCL of a CUDA 13 toolkit, and keeps their output in $OUT, else ./gpu-check:
# gpu_kernels_test (every kernel against the oracle, then the throughput of a few
# transformer-sized ops), nccl_test (every NCCL operation checked on known data across the
# visible GPUs, one rank each, then its busbw at 64 MiB) and gpu_runner_test (whole training
# steps over NCCL on the visible GPUs, every op's times checked against the Program's order).
# Carry BUILD_DIR/tests/{gpu_kernels_test,nccl_test,gpu_runner_test,gpu-libs}.
# usage: bash scripts/gpu_check.sh [BUILD_DIR]   (BUILD_DIR/tests/gpu_kernels_test must exist)
set -uo pipefail
build=${1:-build}
out=${OUT:-gpu-check}
mkdir -p "$out"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda/lib:$build/tests/gpu-libs:${LD_LIBRARY_PATH:-}
test_binary=$build/tests/gpu_kernels_test
if [ ! -x "$test_binary" ]; then
  echo "gpu_check: $test_binary not found: build here with scripts/build.sh (nvcc found) and carry it" >&2
  exit 2
fi
{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1
  nvidia-smi topo -m 2>&1 | head -20
} >"$out/gpu_environment.txt"
cat "$out/gpu_environment.txt"
# Each binary gets 5 minutes: a hang must not use up a lent machine's time.
run() { timeout -k 10 300 "$@"; }
run "$test_binary" 2>&1 | tee "$out/gpu_kernels_test.txt"
rc=${PIPESTATUS[0]}
echo "gpu_kernels_test exit status $rc" | tee -a "$out/gpu_kernels_test.txt"
if [ -x "$build/tests/nccl_test" ]; then
  run "$build/tests/nccl_test" 2>&1 | tee "$out/nccl_test.txt"
  nccl_rc=${PIPESTATUS[0]}
  echo "nccl_test exit status $nccl_rc" | tee -a "$out/nccl_test.txt"
  [ "$rc" -eq 0 ] && rc=$nccl_rc
fi
if [ -x "$build/tests/gpu_runner_test" ]; then
  run "$build/tests/gpu_runner_test" 2>&1 | tee "$out/gpu_runner_test.txt"
  runner_rc=${PIPESTATUS[0]}
  echo "gpu_runner_test exit status $runner_rc" | tee -a "$out/gpu_runner_test.txt"
  [ "$rc" -eq 0 ] && rc=$runner_rc
fi
exit "$rc"
