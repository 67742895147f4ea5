#!/usr/bin/env bash
# One command for every test on a fresh Debian 12 machine: installs what is missing, builds from
# scratch (warnings are errors) and runs the whole CTest suite, GUI end-to-end test included.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
bash "$root/scripts/build.sh"
cd "${VAELAB_BUILD_DIR:-$root/build}"
ctest --output-on-failure --timeout 600 -j"$(nproc)"
