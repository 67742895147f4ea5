#!/usr/bin/env bash
# Frame time and training throughput of the desktop app under Xvfb (software GL, llvmpipe) while
# it trains at full speed, then vaelab-train --bench-steps on the same settings, one after the
# other, ROUNDS times. Prints one line per run and the medians. Not a pass/fail test.
# usage: app_frames.sh [BUILD_DIR]   env: ROUNDS (3) SECONDS_APP (40) SIZE (1280x800)
#        THREADS (the app's default) STEPS (1500) DATA (/usr/share/datasets/fashion-mnist)
#        APP_ARGS (extra vaelab flags); STEPS=0 skips vaelab-train
set -uo pipefail
build=${1:-build}
rounds=${ROUNDS:-3}
secs=${SECONDS_APP:-40}
size=${SIZE:-1280x800}
steps=${STEPS:-1500}
data=${DATA:-/usr/share/datasets/fashion-mnist}
threads=${THREADS:-}
[[ -x $build/vaelab && -x $build/vaelab-train ]] || { echo "build vaelab and vaelab-train in $build first"; exit 1; }
command -v Xvfb >/dev/null || { echo "Xvfb is not installed (package xvfb)"; exit 1; }

tmp=$(mktemp -d)
xvfb_pid=""
cleanup() { [[ -n $xvfb_pid ]] && kill "$xvfb_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
w=${size%x*} h=${size#*x}
Xvfb -displayfd 3 -noreset -screen 0 "$((w + 16))x$((h + 16))x24" -nolisten tcp 3>"$tmp/display" 2>"$tmp/xvfb.log" &
xvfb_pid=$!
for _ in $(seq 100); do [[ -s $tmp/display ]] && break; sleep 0.1; done
export DISPLAY=":$(head -n1 "$tmp/display")"
export XDG_CONFIG_HOME="$tmp/config" XDG_DATA_HOME="$tmp/data"
# The pointer starts at the screen's centre, over the latent map, where its hover tooltip would be
# redrawn in every frame: park it outside the window, as a user watching training would.
command -v xdotool >/dev/null && xdotool mousemove "$((w + 10))" "$((h + 10))"

# The app's default model (latent 2, hidden 400, batch 128, 1 sample, seed 1).
common=(--data "$data" --latent 2 --hidden 400 --batch 128 --samples 1 --seed 1)
[[ -n $threads ]] && common+=(--threads "$threads")
echo "# $(date -u +%FT%TZ) $(uptime | sed 's/.*load/load/') size $size, ${secs} s per app run, ${steps} bench steps"
med=()
for r in $(seq "$rounds"); do
  rm -rf "$tmp/config" "$tmp/data"
  # shellcheck disable=SC2086
  "$build/vaelab" "${common[@]}" --size "$size" --quit-after "$secs" --frame-stats "$tmp/frames.csv" ${APP_ARGS:-} \
    >"$tmp/app.log" 2>&1
  log=$(cat "$tmp/app.log")
  num() { sed -n "s/.*$1 \([0-9.]*\).*/\1/p" <<<"$log" | head -n1; }
  fmed=$(num 'frame work median') fp95=$(num 'frame work median [0-9.]* ms, p95') bmed=$(num 'median build')
  rmed=$(num 'median build [0-9.]* ms, render') smed=$(num 'render [0-9.]* ms, swap')
  share=$(num 'redrawn share of the window median')
  app_steps=$(num 'in steps') app_wall=$(num 'wall')
  bench=0
  ((steps > 0)) && bench=$("$build/vaelab-train" "${common[@]}" --bench-steps "$steps" 2>/dev/null | grep -o '"samples_per_s":[0-9.]*' | cut -d: -f2)
  ratio=$(awk -v a="${app_steps:-0}" -v b="${bench:-0}" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
  printf 'run %d: frame median %s ms p95 %s ms (build %s render %s swap %s, redrawn %s) | app %s samples/s in steps, wall %s | vaelab-train %s | ratio %s | load %s\n' \
    "$r" "$fmed" "$fp95" "$bmed" "$rmed" "$smed" "$share" "$app_steps" "$app_wall" "$bench" "$ratio" "$(uptime | sed 's/.*average: //')"
  med+=("$fmed $fp95 $app_steps $bench $ratio")
done
names=(frame_median_ms frame_p95_ms app_samples_s train_samples_s ratio)
line="median of $rounds runs:"
for c in 1 2 3 4 5; do
  m=$(printf '%s\n' "${med[@]}" | awk -v c="$c" '{ print $c }' | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }')
  line+=" ${names[c - 1]} $m"
done
echo "$line"
