#!/usr/bin/env bash
# Installs every build, test and notebook dependency of bubblesim from Debian packages.
# Nothing is downloaded from anywhere else. Safe to run repeatedly.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config
  libboost-graph-dev libboost-program-options-dev
  libsqlite3-dev catch2 libbenchmark-dev libyaml-cpp-dev nlohmann-json3-dev
  python3 python3-matplotlib python3-ipykernel python3-nbformat jupyter-nbconvert
  librsvg2-bin
  openmpi-bin libopenmpi-dev libopenblas-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#packages[@]} packages already installed"
  exit 0
fi

SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
