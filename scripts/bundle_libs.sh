#!/usr/bin/env bash
# Copies the shared libraries a GPU test needs beyond the CUDA toolkit and the C/C++ runtime
# (yaml-cpp, SQLite) next to it, so the binary runs on a GPU machine without this project's
# Debian packages (scripts/gpu_check.sh puts the folder on LD_LIBRARY_PATH).
# usage: bundle_libs.sh BINARY DIR
set -euo pipefail
mkdir -p "$2"
ldd "$1" | awk '/yaml-cpp|sqlite3/ && $3 ~ /^\// {print $3}' | while read -r lib; do
  cp -L "$lib" "$2/"
done
