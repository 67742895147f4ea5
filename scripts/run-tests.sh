#!/usr/bin/env bash
# One command for every test on a fresh Debian 12 machine: installs what is missing, builds from
# scratch (warnings are errors), then runs ONE CTest suite: unit tests, GUI end-to-end test, crash
# test, and the "reliability" entries (ASan+UBSan suite file by file, TSan cases, each fuzzer for
# FUZZ_SECONDS). The sanitizer and fuzzer folders build in the background from the start, beside
# the Release build and then beside CTest; each reliability entry waits for its folder. CTest's summary is the last thing
# printed, and the script exits with CTest's status. Not a build script for development.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${VAELAB_BUILD_DIR:-$root/build}
rel=$build/reliability
start=$SECONDS
# Wall time and the CPU time of a phase's processes (user + system, from the calling shell's
# cutime and cstime): on a shared machine the wall time says little, the CPU time what a quiet
# one would need. Each line also goes to $rel/phase-times.txt. $shell is the shell whose
# children are counted: this one, or the subshell of the background builds.
shell=$$
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%d", ($16 + $17) / hz }' "/proc/$shell/stat"; }
phase_line() { echo "$1 $((SECONDS - $2)) s (cpu $(($(cpu_s) - $3)) s)"; }  # name, wall start, cpu start

t=$SECONDS c=$(cpu_s)
bash "$root/scripts/setup.sh" --test
setup_time=$(phase_line setup "$t" "$c")

mkdir -p "$rel"
printf '%s\n' "$setup_time" >"$rel/phase-times.txt"
: >"$rel/builds.log"

# The reliability folders build in the background from the start, one after the other with one
# compile job each (VAELAB_JOBS=1), beside the Release build and then beside CTest, so both cores
# are busy from the first minute: the ASan folder first (the largest build, and its entries are the
# longest part of CTest), then the fuzzers' (they run for a fixed time each), then TSan. Their
# compiler output goes to $rel/builds.log; a failed build does not stop anything: its entries retry
# it and fail with the compiler's errors.
background_build() {  # name, command…
  local name=$1 t=$SECONDS c status=built line
  shift
  c=$(cpu_s)
  "$@" >>"$rel/builds.log" 2>&1 || status="FAILED (its entries retry it)"
  line=$(phase_line "$name" "$t" "$c")
  echo "$line" >>"$rel/phase-times.txt"
  echo "run-tests: $line: $status; log $rel/builds.log" >&2
}
(
  shell=$BASHPID
  export VAELAB_JOBS=1
  background_build "ASan folder" env VAELAB_ASAN_DIR="$rel/asan" bash "$root/scripts/run-sanitizers.sh" build-asan
  background_build "fuzzer folder" env VAELAB_FUZZ_DIR="$rel/fuzz" bash "$root/scripts/run-fuzzers.sh" --build-only
  background_build "TSan folder" env VAELAB_TSAN_DIR="$rel/tsan" bash "$root/scripts/run-sanitizers.sh" build-tsan
) &
builds=$!

# The Release build: everything CTest runs (the benchmarks, which it never runs, are left out).
t=$SECONDS c=$(cpu_s)
bash "$root/scripts/build.sh" -DVAELAB_RELIABILITY_TESTS=ON -DVAELAB_BUILD_BENCH=OFF
build_time=$(phase_line "build (beside the background builds)" "$t" "$c")
echo "$build_time" >>"$rel/phase-times.txt"
echo "run-tests: phase times: $setup_time, $build_time; $((SECONDS - start)) s so far" >&2
echo "run-tests: load before CTest: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores" >&2

t=$SECONDS c=$(cpu_s)
cd "$build"
status=0
ctest --output-on-failure --timeout 600 -j"$(nproc)" || status=$?
wait "$builds" || true
# CTest's line: its CPU is what this shell's children used since it started, less the builds'.
built_cpu=$(awk '/ folder / { gsub(/[^0-9 ]/, ""); n = split($0, f, " "); s += f[n] } END { print s + 0 }' "$rel/phase-times.txt")
echo "ctest and background builds $((SECONDS - t)) s (cpu $(($(cpu_s) - c)) s, of which builds $built_cpu s); total $((SECONDS - start)) s" >>"$rel/phase-times.txt"
exit $status
