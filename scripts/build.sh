#!/usr/bin/env bash
# Configures and builds vaelab into ${VAELAB_BUILD_DIR:-build} (Release, warnings as errors).
# Not the set-up: scripts/setup.sh installs the packages first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${VAELAB_BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DVAELAB_WERROR=ON "$@" >/dev/null
cmake --build "$build" -j"$(nproc)"
