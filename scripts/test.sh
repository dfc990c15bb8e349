#!/usr/bin/env bash
# Sets up (Debian packages), builds, and runs every test: unit, golden, property, CLI and the
# teaching notebook. This is what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
ctest --test-dir build --output-on-failure --timeout 900
