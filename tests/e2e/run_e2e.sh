#!/usr/bin/env bash
# End-to-end test of the desktop app under Xvfb: start vaelab on a 2,000-image subset of
# Fashion-MNIST, let it train, pause it with its own button, drag the first decoder slider with
# xdotool and check (from the app's own PNG dumps) that the decoded image changed — and that it
# stays put without a drag — open the gap window's Posterior tab and wait for its heat map, then
# close it with Ctrl+Q and expect exit code 0 and an autosave of the paused step. Relaunched, the
# app must offer to resume it: "Resume" continues from that step, "Start fresh" (third run) starts
# at step 0 and moves the autosave aside. A last run (--no-resume: no offer) poisons a weight with
# NaN (--poison-at-step), expects the error in the window, the app alive and a finite autosave.
# Not a unit test of the panels; usage: run_e2e.sh path/to/vaelab OUTPUT_DIR
set -uo pipefail

app=${1:?usage: run_e2e.sh VAELAB OUTPUT_DIR}
out=${2:?usage: run_e2e.sh VAELAB OUTPUT_DIR}
data=${VAELAB_E2E_DATA:-/usr/share/datasets/fashion-mnist}

skip() { echo "SKIP: $*"; exit 77; }
fail() {
  echo "FAIL: $*"
  echo "---- app log ----"; cat "$out/app.log" 2>/dev/null | tail -30
  echo "screenshots: $out/shots"
  exit 1
}
for tool in Xvfb xdotool; do command -v "$tool" >/dev/null || skip "$tool is not installed"; done
[[ -d $data ]] || skip "no data folder at $data (package dataset-fashion-mnist, or set VAELAB_E2E_DATA)"
[[ -x $app ]] || fail "no vaelab binary at $app"
train=$(dirname "$app")/vaelab-train  # built beside vaelab; checks the autosave loads

rm -rf "$out"
mkdir -p "$out/shots" "$out/config" "$out/data"
xvfb_pid="" app_pid=""
cleanup() {
  [[ -n $app_pid ]] && kill "$app_pid" 2>/dev/null
  [[ -n $xvfb_pid ]] && kill "$xvfb_pid" 2>/dev/null
  wait 2>/dev/null
}
trap cleanup EXIT

# ---- --help works without a display ----
"$app" --help | grep -q -- "--data DIR" || fail "--help does not describe --data"

# ---- a private X server on a free display (Xvfb picks the number) ----
Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp 3>"$out/display" 2>"$out/xvfb.log" &
xvfb_pid=$!
for _ in $(seq 100); do [[ -s $out/display ]] && break; sleep 0.1; done
[[ -s $out/display ]] || fail "Xvfb did not start"
export DISPLAY=":$(head -n1 "$out/display")"
export XDG_CONFIG_HOME="$out/config" XDG_DATA_HOME="$out/data"
echo "Xvfb on $DISPLAY"

start_app() {  # start_app SHOT_DIR [options…]: sets app_pid, shot_dir, shots
  shot_dir=$1
  shift
  shots=0
  "$app" --data "$data" --train-limit 2000 --size 1280x800 --screenshot-dir "$shot_dir" "$@" >>"$out/app.log" 2>&1 &
  app_pid=$!
}
close_app() {  # Ctrl+Q, then expect exit code 0 within 20 s
  alive || fail "vaelab is not running before the close"
  xdotool windowfocus --sync "$wid" 2>/dev/null || true
  xdotool key --clearmodifiers ctrl+q
  for _ in $(seq 200); do alive || break; sleep 0.1; done
  if alive; then
    kill "$app_pid"
    fail "vaelab did not exit within 20 s of Ctrl+Q"
  fi
  wait "$app_pid"
  local rc=$?
  app_pid=""
  ((rc == 0)) || fail "vaelab exited with code $rc"
}

alive() { kill -0 "$app_pid" 2>/dev/null; }
wait_for() {  # wait_for FILE SECONDS
  local i
  for ((i = 0; i < $2 * 10; ++i)); do
    [[ -e $1 ]] && return 0
    alive || fail "vaelab died (waiting for $(basename "$1"))"
    sleep 0.1
  done
  fail "timed out after $2 s waiting for $(basename "$1")"
}
shot() {  # ask the app for a screenshot (SIGUSR1) and wait for it; sets $info to its .txt file
  shots=$((shots + 1))
  info=$(printf '%s/shot-%03d.txt' "$shot_dir" "$shots")
  kill -USR1 "$app_pid"
  wait_for "$info" 20
}
field() { awk -v k="$1" '$1 == k { print $2 }' "$info"; }
rect() { awk -v k="$1" '$1 == "rect" && $2 == k { print $3, $4, $5, $6 }' "$info"; }

start_app "$out/shots" --frame-stats "$out/frames.csv"
wait_for "$out/shots/ready" 60
echo "window up, first latent codes drawn"
wid=$(xdotool search --sync --name '^vaelab$' | head -n1)
[[ -n $wid ]] || fail "no window named vaelab"
sleep 3  # let it train a little

shot
[[ $(field state) == running ]] || fail "expected training to run, state is '$(field state)'"
step=$(field step)
((step > 0)) || fail "no training steps after a few seconds"
echo "training: step $step"

# ---- pause with the app's own button ----
read -r x0 y0 x1 y1 <<<"$(rect pause_button)"
[[ -n ${x1:-} ]] || fail "no pause button rectangle in $info"
xdotool mousemove --window "$wid" $(((${x0%.*} + ${x1%.*}) / 2)) $(((${y0%.*} + ${y1%.*}) / 2)) click 1
for _ in $(seq 10); do
  sleep 0.5
  shot
  [[ $(field state) == paused ]] && break
done
[[ $(field state) == paused ]] || fail "the Pause button did not pause training"
echo "paused at step $(field step)"
before="${info%.txt}-decoder.png"

# ---- drag the first decoder slider from its middle to near its right end ----
read -r x0 y0 x1 y1 <<<"$(rect decoder_slider0)"
[[ -n ${x1:-} ]] || fail "no decoder slider rectangle in $info"
x0=${x0%.*} x1=${x1%.*} y=$(((${y0%.*} + ${y1%.*}) / 2))
xdotool mousemove --window "$wid" $(((x0 + x1) / 2)) "$y" mousedown 1
for f in 60 70 80 90; do
  xdotool mousemove --window "$wid" $((x0 + (x1 - x0) * f / 100)) "$y"
  sleep 0.1
done
xdotool mouseup 1
sleep 0.5
shot
after="${info%.txt}-decoder.png"
[[ -s $before && -s $after ]] || fail "decoder images missing ($before, $after)"
cmp -s "$before" "$after" && fail "the decoded image did not change after dragging the slider"
echo "decoder image changed with the drag"

# ---- without a drag (and paused) it must stay exactly the same ----
xdotool mousemove --window "$wid" 640 200  # hover the latent map for the record
sleep 0.5
shot
cmp -s "$after" "${info%.txt}-decoder.png" || fail "the decoded image changed without any input while paused"
echo "decoder image stable without input"

# ---- the gap window: open its "Posterior" tab; the grid is computed off the UI thread ----
read -r x0 y0 x1 y1 <<<"$(rect gap_tab1)"
[[ -n ${x1:-} ]] || fail "no Posterior tab rectangle (gap_tab1) in $info"
xdotool mousemove --window "$wid" $(((${x0%.*} + ${x1%.*}) / 2)) $(((${y0%.*} + ${y1%.*}) / 2))
sleep 0.2
xdotool mousedown 1
sleep 0.2
xdotool mouseup 1
for _ in $(seq 30); do
  sleep 0.5
  shot
  [[ -n $(rect posterior_heat) ]] && break
done
[[ -n $(rect posterior_heat) ]] || fail "the true posterior heat map did not appear within 15 s"
(($(field errors) == 0)) || fail "errors shown after opening the posterior tab"
echo "true posterior drawn"

# ---- close with Ctrl+Q, expect exit code 0 and the paused step autosaved ----
[[ $(field state) == paused ]] || fail "expected the run to be still paused before closing"
saved_step=$(field step)
close_app
grep 'frame work' "$out/app.log" || true
echo "closed cleanly"
autosave=$out/data/vaelab/autosave.vaelab aside=$out/data/vaelab/autosave.previous.vaelab
[[ -s $autosave ]] || fail "no autosave at $autosave after the exit"
grep -q "autosaved step $saved_step to " "$out/app.log" || fail "the exit did not autosave step $saved_step"
echo "exit autosaved step $saved_step"

# ---- relaunch: the resume offer (training waits for it); take it, and the run continues at saved_step ----
answer_offer() {  # answer_offer BUTTON: wait for the modal, click BUTTON (resume_button | fresh_button)
  wid=$(xdotool search --sync --name '^vaelab$' | head -n1)
  for _ in $(seq 40); do
    sleep 0.5
    shot
    [[ $(field resume_offer) == 1 && -n $(rect "$1") ]] && break
  done
  [[ $(field resume_offer) == 1 ]] || fail "no offer to resume the autosave within 20 s"
  [[ -e $shot_dir/ready ]] && fail "training started while the resume offer was open"
  read -r x0 y0 x1 y1 <<<"$(rect "$1")"
  xdotool mousemove --window "$wid" $(((${x0%.*} + ${x1%.*}) / 2)) $(((${y0%.*} + ${y1%.*}) / 2))
  sleep 0.2
  xdotool mousedown 1
  sleep 0.2
  xdotool mouseup 1
  wait_for "$shot_dir/ready" 60
  shot
  [[ $(field resume_offer) == 0 ]] || fail "the resume offer is still open after clicking $1"
}
start_app "$out/shots-resume" --paused
answer_offer resume_button
[[ $(field step) == "$saved_step" ]] || fail "Resume: expected step $saved_step, the app is at step $(field step)"
(($(field errors) == 0)) || fail "errors shown after resuming"
echo "resumed at step $saved_step"
close_app

start_app "$out/shots-fresh" --paused
answer_offer fresh_button
[[ $(field step) == 0 ]] || fail "Start fresh: expected step 0, the app is at step $(field step)"
[[ -s $aside && ! -e $autosave ]] || fail "Start fresh did not move the autosave to $aside"
close_app
[[ -e $autosave ]] && fail "an untrained run (step 0) replaced the autosave on exit"
echo "started fresh; the autosave was moved aside"

# ---- a trainer error (NaN weights) appears in the window; the app keeps running ----
# With an autosave present, --no-resume must skip the offer (else "ready" never appears).
cp "$aside" "$autosave"
start_app "$out/shots-error" --no-resume --poison-at-step 40
wait_for "$out/shots-error/ready" 60
wid=$(xdotool search --sync --name '^vaelab$' | head -n1)
errors=0
for _ in $(seq 30); do
  sleep 1
  shot
  errors=$(field errors)
  ((errors > 0)) && break
done
((errors > 0)) || fail "no error message in the window after poisoning the weights"
sleep 1
shot
alive || fail "vaelab died after the trainer error"
echo "trainer error shown ($(field state) at step $(field step)); app still running"
close_app
# The autosave on exit holds the restored, finite weights (a checkpoint with NaN would not load).
if [[ -x $train ]]; then
  "$train" --data "$data" --load "$autosave" --epochs 0 --train-limit 2000 --eval-limit 200 >/dev/null 2>"$out/train-load.log" ||
    fail "the autosave written after the divergence does not load: $(cat "$out/train-load.log")"
  echo "the autosave after the divergence loads (finite weights)"
fi
echo "PASS (screenshots: $out/shots, $out/shots-error)"
