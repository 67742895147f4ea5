#!/usr/bin/env bash
# The fast loop: builds the doctest suite (Release, warnings as errors) into
# ${VAELAB_BUILD_DIR:-build} and runs it; arguments go to the doctest binary, e.g.
#   scripts/run-unit-tests.sh -tc='trainer:*'
# Not the whole suite (scripts/run-tests.sh: GUI test, CLI tests, sanitizers, fuzzers).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bash "$root/scripts/setup.sh"
VAELAB_TARGETS=vaelab_tests bash "$root/scripts/build.sh"
exec "${VAELAB_BUILD_DIR:-$root/build}/tests/vaelab_tests" "$@"
