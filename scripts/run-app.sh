#!/usr/bin/env bash
# One command to try vaelab on a fresh Debian 12 machine: installs what is missing (no test tools),
# builds the two programs, and opens the app on Fashion-MNIST. Extra arguments go to vaelab (e.g.
# --data DIR, --load FILE). Not the tests (scripts/run-tests.sh, scripts/run-unit-tests.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
VAELAB_TARGETS="vaelab vaelab-train" bash "$root/scripts/build.sh"
exec "${VAELAB_BUILD_DIR:-$root/build}/vaelab" "$@"
