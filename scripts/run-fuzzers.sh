#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz with clang into build-fuzz and runs each one for
# FUZZ_SECONDS (default 60) on a copy of its corpus; exits non-zero on a crash and names the input.
# Not part of the default test run; installs clang + libclang-rt-14-dev when missing (apt-get).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${VAELAB_FUZZ_DIR:-$root/build-fuzz}
seconds=${FUZZ_SECONDS:-60}
read -r -a fuzzers <<<"${FUZZERS:-idx checkpoint safetensors}"

# ---- packages (idempotent, like scripts/setup.sh) ----
packages=(clang libclang-rt-14-dev cmake make libeigen3-dev zlib1g-dev doctest-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "run-fuzzers: installing ${missing[*]}" >&2
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# ---- build (a folder configured with another compiler is reconfigured from scratch) ----
start=$SECONDS
if [[ -f $build/CMakeCache.txt ]] && ! grep -q '^CMAKE_CXX_COMPILER:[A-Z]*=.*clang++' "$build/CMakeCache.txt"; then
  rm -rf "$build/CMakeCache.txt" "$build/CMakeFiles"
fi
# Debug: no -DNDEBUG, so assert() and Eigen's index checks stay on; tests/fuzz adds -O1 itself.
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DVAELAB_FUZZ=ON \
  -DVAELAB_BUILD_APP=OFF -DVAELAB_BUILD_TESTS=ON -DVAELAB_WERROR=ON >/dev/null
targets=(vaelab_fuzz_seeds)
for f in "${fuzzers[@]}"; do targets+=("fuzz_$f"); done
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"
echo "run-fuzzers: built in $((SECONDS - start)) s" >&2

# ---- corpora: the checked-in seeds, freshly generated seeds, and what earlier runs found ----
bin=$build/tests/fuzz
"$bin/vaelab_fuzz_seeds" "$build/fuzz-seeds"
status=0
summary=()
for f in "${fuzzers[@]}"; do
  corpus=$build/fuzz-corpus/$f
  artifacts=$build/fuzz-artifacts/$f
  log=$build/fuzz-logs/$f.log
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  cp -n "$root/tests/fuzz/corpus/$f/"* "$corpus/" 2>/dev/null || true
  for s in "$build/fuzz-seeds/$f/"*; do cp "$s" "$corpus/gen-$(basename "$s")"; done  # current format
  extra=()
  [[ -f $root/tests/fuzz/$f.dict ]] && extra+=("-dict=$root/tests/fuzz/$f.dict")
  echo "== fuzz_$f for $seconds s on $(find "$corpus" -type f | wc -l) inputs (log: $log)" >&2
  rc=0
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
    "$bin/fuzz_$f" "$corpus" "${extra[@]}" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 || rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1 || true)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || true)
  if ((rc != 0)); then
    status=1
    repro=$(grep -o 'Test unit written to .*' "$log" | sed 's/Test unit written to //' | tail -1 || true)
    grep -E '^(==[0-9]+==ERROR|SUMMARY|.*invariant broken|.*runtime error)' "$log" | head -5 >&2 || true
    echo "run-fuzzers: fuzz_$f FAILED (exit $rc); reproducer: ${repro:-none written, see $log}" >&2
    [[ -n $repro ]] && echo "  reproduce with: $bin/fuzz_$f $repro" >&2
    summary+=("fuzz_$f: CRASH after ${execs:-?} executions, reproducer ${repro:-?}")
  else
    summary+=("fuzz_$f: ${execs:-?} executions, coverage ${cov:-?}, no crash")
  fi
done
printf 'run-fuzzers: %s\n' "${summary[@]}" >&2
echo "run-fuzzers: $([[ $status == 0 ]] && echo clean || echo FAILED) in $((SECONDS - start)) s" >&2
exit $status
