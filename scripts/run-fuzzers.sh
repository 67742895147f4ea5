#!/usr/bin/env bash
# Builds the libFuzzer harnesses of tests/fuzz with clang into build-fuzz and runs each one for
# FUZZ_SECONDS (default 60) on a copy of its corpus; exits non-zero on a crash and names the input.
# usage: run-fuzzers.sh [--build-only]; FUZZERS="idx checkpoint safetensors npy npz cifar" picks harnesses (the
# CTest entries fuzz_<name> run one each). Installs clang + libclang-rt-14-dev via scripts/setup.sh
# when it configures the folder.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build_only=0
case ${1:-} in
  "") ;;
  --build-only) build_only=1 ;;
  *) echo "usage: run-fuzzers.sh [--build-only]" >&2; exit 2 ;;
esac
build=${VAELAB_FUZZ_DIR:-$root/build-fuzz}
seconds=${FUZZ_SECONDS:-60}
read -r -a fuzzers <<<"${FUZZERS:-idx checkpoint safetensors npy npz cifar}"

# ---- build: one at a time per folder (the CTest entries fuzz_<name> may start together;
# the first builds, the others wait and find it up to date). The folder is configured once per
# set of settings; a folder configured with another compiler is reconfigured from scratch.
start=$SECONDS
mkdir -p "$(dirname "$build")"
exec {lock}>"$build.lock"
flock "$lock"
# Debug: no -DNDEBUG, so assert() and Eigen's index checks stay on; tests/fuzz adds -O1 itself.
configure=(-S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG= -DCMAKE_C_FLAGS_DEBUG= -DVAELAB_FUZZ=ON
  -DVAELAB_BUILD_APP=OFF -DVAELAB_BUILD_TESTS=ON -DVAELAB_WERROR=ON)
stamp=$build/vaelab-configure.txt
if [[ ! -f $build/CMakeCache.txt || $(cat "$stamp" 2>/dev/null) != "${configure[*]}" ]]; then
  bash "$root/scripts/setup.sh" --test  # clang and libclang-rt-14-dev among the rest (idempotent)
  if [[ -f $build/CMakeCache.txt ]] && ! grep -q '^CMAKE_CXX_COMPILER:[A-Z]*=.*clang++' "$build/CMakeCache.txt"; then
    rm -rf "$build/CMakeCache.txt" "$build/CMakeFiles"
  fi
  rm -f "$stamp"
  CC=clang CXX=clang++ cmake "${configure[@]}" >/dev/null
  echo "${configure[*]}" >"$stamp"
fi
targets=(vaelab_fuzz_seeds)
for f in "${fuzzers[@]}"; do targets+=("fuzz_$f"); done
cmake --build "$build" -j"${VAELAB_JOBS:-$(nproc)}" --target "${targets[@]}"
bin=$build/tests/fuzz
# Seeds in the current formats, written under the lock so no entry copies a half-written one.
((build_only)) || "$bin/vaelab_fuzz_seeds" "$build/fuzz-seeds"
exec {lock}>&-
echo "run-fuzzers: $build up to date after $((SECONDS - start)) s" >&2
((build_only)) && exit 0

# ---- corpora: the checked-in seeds, freshly generated seeds, and what earlier runs found ----
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
