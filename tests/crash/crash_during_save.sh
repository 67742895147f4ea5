#!/usr/bin/env bash
# CTest "crash_during_save": ROUNDS times, start vaelab_save_loop, SIGKILL it after 0-50 ms, then
# check the checkpoint (once one exists) loads intact and no temp file outlives a later save.
# Not a unit test of the file format (tests/test_checkpoint.cpp). Usage: crash_during_save.sh PROG
set -euo pipefail
prog=${1:?usage: crash_during_save.sh PATH/TO/vaelab_save_loop}
rounds=${CRASH_ROUNDS:-200}
max_ms=${CRASH_MAX_MS:-50}

work=$(mktemp -d "${TMPDIR:-/tmp}/vaelab-crash.XXXXXX")
trap 'rm -rf "$work"' EXIT
ckpt=$work/state.vck

fail() {
  echo "crash_during_save: FAILED in round $round: $*" >&2
  ls -la "$work" >&2
  exit 1
}

temps() { compgen -G "$ckpt.tmp.*" || true; }

existed=0 loaded=0 saves=0 left_temp=0 no_save=0
for ((round = 0; round < rounds; ++round)); do
  log=$work/round.log
  # Emptied here, not only by the child's redirection: a kill that lands before the child has
  # opened the log would otherwise leave the previous round's "saved" lines to be counted again.
  : >"$log"
  # exec, so that $! is the save loop itself: with an EXIT trap set, bash may otherwise keep a
  # subshell between us and the program, and the SIGKILL would hit the subshell instead.
  (exec "$prog" save "$ckpt" "$((round * 7))" >"$log" 2>&1) &
  pid=$!
  ms=$((RANDOM % (max_ms + 1)))
  sleep "$(printf '0.%03d' "$ms")"
  kill -KILL "$pid" 2>/dev/null || true
  if wait "$pid" 2>/dev/null; then fail "the save loop exited by itself: $(cat "$log")"; fi
  grep -q "vaelab_save_loop:" "$log" && fail "the save loop reported an error: $(cat "$log")"
  n=$(grep -c '^saved ' "$log" || true)
  saves=$((saves + n))
  ((n == 0)) && no_save=$((no_save + 1))

  # 1. Once a checkpoint exists it must always load and hold one whole round's state.
  if [[ -e $ckpt ]]; then
    existed=$((existed + 1))
    out=$("$prog" check "$ckpt" 2>&1) || fail "the checkpoint does not load after a kill ($ms ms): $out"
    loaded=$((loaded + 1))
  elif ((existed > 0)); then
    fail "the checkpoint disappeared"
  fi

  # 2. Temp files: a kill mid-write leaves the killed writer's own temp; any older one must have
  #    been removed by this run's first successful save.
  for t in $(temps); do
    if [[ $t == "$ckpt.tmp.$pid" ]]; then
      left_temp=$((left_temp + 1))
    elif ((n > 0)); then
      fail "stale temp file $(basename "$t") survived a successful save by pid $pid"
    fi
  done
done

# A final save that runs to completion clears whatever the last kill left behind.
"$prog" save "$ckpt" 1000000 1 >/dev/null || fail "the final save failed"
"$prog" check "$ckpt" >/dev/null || fail "the final checkpoint does not load"
left=$(temps)
[[ -z $left ]] || fail "temp files left after the final save: $left"

echo "crash_during_save: $rounds rounds, $saves completed saves, $no_save runs killed before their first" \
  "save finished, checkpoint loaded intact $loaded/$existed times, $left_temp kills left a temp file" \
  "(each cleared by the next save), none left at the end"
