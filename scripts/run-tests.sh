#!/usr/bin/env bash
# One command for every test on a fresh Debian 12 machine: installs what is missing, builds from
# scratch (warnings are errors), builds the sanitizer and fuzzer folders, then runs ONE CTest
# suite: unit tests, GUI end-to-end test, crash test, and the "reliability" entries (ASan+UBSan
# suite, TSan cases, each fuzzer for FUZZ_SECONDS). Its summary is the last thing printed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${VAELAB_BUILD_DIR:-$root/build}
rel=$build/reliability
start=$SECONDS
times=()
# Wall time and the CPU time of the phase's processes (user + system, from this shell's cutime and
# cstime): on a shared machine the wall time says little, the CPU time what a quiet one would need.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%d", ($16 + $17) / hz }' "/proc/$$/stat"; }
cpu0=0
phase_done() { local c; c=$(cpu_s); times+=("$1 $((SECONDS - $2)) s (cpu $((c - cpu0)) s)"); cpu0=$c; }

t=$SECONDS
bash "$root/scripts/setup.sh"
phase_done setup "$t"

t=$SECONDS
bash "$root/scripts/build.sh" -DVAELAB_RELIABILITY_TESTS=ON
phase_done build "$t"

# The reliability folders are built here, one after the other, so CTest's entries only run. A
# failed build does not stop the run: its CTest entry retries it and fails, naming the errors.
t=$SECONDS
VAELAB_ASAN_DIR=$rel/asan VAELAB_TSAN_DIR=$rel/tsan bash "$root/scripts/run-sanitizers.sh" build ||
  echo "run-tests: a sanitizer build FAILED (sanitizers_* will fail below)" >&2
phase_done "sanitizer builds" "$t"
t=$SECONDS
VAELAB_FUZZ_DIR=$rel/fuzz bash "$root/scripts/run-fuzzers.sh" --build-only ||
  echo "run-tests: the fuzzer build FAILED (fuzz_* will fail below)" >&2
phase_done "fuzzer build" "$t"

echo "run-tests: phase times before CTest: $(IFS=,; echo "${times[*]}" | sed 's/,/, /g'); $((SECONDS - start)) s so far" >&2
echo "run-tests: load before CTest: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores" >&2
cd "$build"
ctest --output-on-failure --timeout 600 -j"$(nproc)"
