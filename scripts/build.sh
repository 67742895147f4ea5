#!/usr/bin/env bash
# Configures and builds vaelab into ${VAELAB_BUILD_DIR:-build} (Release, warnings as errors);
# extra arguments go to cmake's configure step. VAELAB_TARGETS="vaelab vaelab-train" builds only
# those targets (default: all). Not the set-up: scripts/setup.sh installs the packages first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${VAELAB_BUILD_DIR:-$root/build}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DVAELAB_WERROR=ON "$@" >/dev/null
targets=()
for t in ${VAELAB_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build" -j"$(nproc)" "${targets[@]}"
