#!/usr/bin/env bash
# Builds the doctest suite twice and runs it: build-asan (AddressSanitizer + UBSan, every test case)
# and build-tsan (ThreadSanitizer, the trainer:*, gradients:* and thread pool:* cases that drive the pool).
# usage: run-sanitizers.sh [all|build|build-asan|build-tsan|asan [doctest arguments…]|tsan]: both
# builds and runs (default), the builds only, or build-if-needed and run one of them (the CTest
# entries sanitizers_asan:<test file> pass --source-file to run one file's cases; sanitizers_tsan).
# Warnings are errors here too. Not the fuzzers (scripts/run-fuzzers.sh). Installs clang through
# scripts/setup.sh when it configures a folder.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-all}
case $mode in
  all | build | build-asan | build-tsan | tsan) ((${#} <= 1)) || { echo "run-sanitizers: $mode takes no arguments" >&2; exit 2; } ;;
  asan) ;;
  *) echo "usage: run-sanitizers.sh [all|build|build-asan|build-tsan|asan [doctest arguments…]|tsan]" >&2; exit 2 ;;
esac
shift $((${#} > 0 ? 1 : 0))
asan_args=("$@")
asan_dir=${VAELAB_ASAN_DIR:-$root/build-asan}
tsan_dir=${VAELAB_TSAN_DIR:-$root/build-tsan}
jobs=${VAELAB_JOBS:-$(nproc)}
# Seconds each test run may take before it counts as hung (sanitized runs are 2-10x slower).
run_limit=${SANITIZER_RUN_SECONDS:-240}

# clang compiles this code base about twice as fast as GCC at -O1 with sanitizers (and GCC 12 floods
# the log with false -Wuninitialized reports from its AVX-512 headers). If clang cannot build the
# code (clang 14 lacks a few C++20 features GCC 12 has), the build is retried once with GCC.
if [[ -z ${SANITIZER_CXX:-} ]] && command -v clang++ >/dev/null && command -v clang >/dev/null; then
  cc=clang cxx=clang++
else
  cc=${SANITIZER_CC:-cc} cxx=${SANITIZER_CXX:-c++}
fi

# Debug keeps the project's -O3 (Release/RelWithDebInfo only) off so the -O1 below applies; it
# also leaves Eigen's own index assertions on. The app is not needed: only core and its tests.
common=(-DCMAKE_BUILD_TYPE=Debug -DVAELAB_BUILD_APP=OFF -DVAELAB_BUILD_TESTS=ON -DVAELAB_WERROR=ON)

# One build of a folder at a time: CTest's entries (and run-tests.sh's background builds) may ask
# for the same folder at once; the first builds it, the others wait and find it up to date.
# A folder clang could not build is remembered as GCC's ($dir.gcc, beside its lock): every later
# entry on it goes to GCC at once, instead of configuring clang again, failing, and rebuilding the
# whole folder with GCC each time. Remove the file (or the folder) to try clang again.
configure_build() {  # dir, sanitizer flags, target
  local dir=$1 flags=$2 target=$3 t0=$SECONDS lock status=0
  mkdir -p "$(dirname "$dir")"
  exec {lock}>"$dir.lock"
  flock "$lock"
  [[ -f $dir.gcc && -z ${SANITIZER_CXX:-} ]] && cc=cc cxx=c++
  if ! build_with "$cc" "$cxx" "$dir" "$flags" "$target"; then
    if [[ $cxx == clang++ ]]; then
      echo "run-sanitizers: clang could not build the suite (errors above); using GCC from here on" >&2
      cc=cc cxx=c++
      build_with "$cc" "$cxx" "$dir" "$flags" "$target" && echo "clang failed; GCC built this folder" >"$dir.gcc" || status=1
    else
      status=1
    fi
  fi
  exec {lock}>&-
  ((status == 0)) && echo "== $dir up to date after $((SECONDS - t0)) s" >&2
  return $status
}

build_with() {  # C compiler, C++ compiler, dir, sanitizer flags, target
  local c=$1 cxx_=$2 dir=$3 flags=$4 target=$5
  # Line tables only (GCC: -g1), not full debug info: the reports still name file:line, and the
  # suite compiles faster (train_step.cpp: 32 → 25 s with clang). Debug's own -g is dropped too.
  local dbg=-gline-tables-only
  [[ $cxx_ == clang++ ]] || dbg=-g1
  local configure=(-S "$root" -B "$dir" "${common[@]}"
    -DCMAKE_CXX_FLAGS="-O1 $dbg -fno-omit-frame-pointer $flags"
    -DCMAKE_C_FLAGS="-O1 $dbg -fno-omit-frame-pointer $flags"
    -DCMAKE_CXX_FLAGS_DEBUG= -DCMAKE_C_FLAGS_DEBUG=
    -DCMAKE_EXE_LINKER_FLAGS="$flags")
  # Configured once per set of settings: an entry that finds the folder configured just builds
  # (make's no-op check), which is what keeps twenty CTest entries on one folder cheap.
  local stamp="$dir/vaelab-configure.txt" settings="CC=$c CXX=$cxx_ ${configure[*]}"
  if [[ ! -f $dir/CMakeCache.txt || $(cat "$stamp" 2>/dev/null) != "$settings" ]]; then
    echo "== configure $dir with $cxx_ ($flags)" >&2
    bash "$root/scripts/setup.sh" --test  # clang and libclang-rt-14-dev among the rest (idempotent)
    # A folder configured with another compiler is reconfigured from scratch.
    if [[ -f $dir/CMakeCache.txt ]] && ! grep -q "^CMAKE_CXX_COMPILER:[A-Z]*=.*/$(basename "$cxx_")\$" "$dir/CMakeCache.txt"; then
      rm -rf "$dir/CMakeCache.txt" "$dir/CMakeFiles"
    fi
    rm -f "$stamp"
    CC=$c CXX=$cxx_ cmake "${configure[@]}" >/dev/null || return 1
    echo "$settings" >"$stamp"
  fi
  cmake --build "$dir" -j"$jobs" --target "$target"
}

run_tests() {  # label, dir, binary, extra doctest arguments…; sanitizer options come from the caller
  local label=$1 dir=$2 bin=$3 t0=$SECONDS
  shift 3
  echo "== run $bin${*:+ $*} under $label" >&2
  if ! (cd "$dir/tests" && timeout "$run_limit" "./$bin" "$@"); then
    echo "run-sanitizers: $label run FAILED (see the report above)" >&2
    status=1
  fi
  echo "== $label run took $((SECONDS - t0)) s" >&2
}

status=0
start=$SECONDS

# ---- AddressSanitizer + UndefinedBehaviorSanitizer: the whole suite (or the cases asked for) ----
if [[ $mode == all || $mode == build || $mode == build-asan || $mode == asan ]]; then
  if configure_build "$asan_dir" "-fsanitize=address,undefined -fno-sanitize-recover=undefined" vaelab_tests; then
    [[ $mode == build || $mode == build-asan ]] ||
      ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1 \
        UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
        run_tests "ASan+UBSan" "$asan_dir" vaelab_tests "${asan_args[@]}"
  else
    echo "run-sanitizers: the ASan build FAILED" >&2
    status=1
  fi
fi

# ---- ThreadSanitizer: the tests that run the trainer thread and the thread pool ----
# They take about a second, so they run TSAN_REPEAT times (default 5) to see more interleavings.
# Only their three files are compiled (target vaelab_thread_tests), not the whole suite.
if [[ $mode == all || $mode == build || $mode == build-tsan || $mode == tsan ]]; then
  if configure_build "$tsan_dir" "-fsanitize=thread" vaelab_thread_tests; then
    if [[ $mode == all || $mode == tsan ]]; then
      for ((i = 1; i <= ${TSAN_REPEAT:-5}; ++i)); do
        TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
          run_tests "TSan (round $i)" "$tsan_dir" vaelab_thread_tests -tc="${TSAN_TESTS:-trainer:*,gradients:*,thread pool:*}"
      done
    fi
  else
    echo "run-sanitizers: the TSan build FAILED" >&2
    status=1
  fi
fi

echo "run-sanitizers ($mode): $([[ $status == 0 ]] && echo clean || echo FAILED) in $((SECONDS - start)) s" >&2
exit $status
