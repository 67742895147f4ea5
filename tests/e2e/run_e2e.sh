#!/usr/bin/env bash
# End-to-end test of the desktop app under Xvfb: start vaelab on a 2,000-image subset of
# Fashion-MNIST, let it train, pause it with its own button, drag the first decoder slider with
# xdotool and check (from the app's own PNG dumps) that the decoded image changed — and that it
# stays put without a drag — open the gap window's Posterior tab and wait for its heat map, then
# close it with Ctrl+Q and expect exit code 0 and an autosave of the paused step. Relaunched, the
# app must offer to resume it: "Resume" continues from that step, paused as it was, at the epoch the
# offer showed; "Start fresh" (third run) starts at step 0 and moves the autosave aside. A last run (--no-resume: no offer) poisons a weight with
# NaN (--poison-at-step), expects the error in the window, the app alive and a finite autosave.
# Not a unit test of the panels; usage: run_e2e.sh path/to/vaelab OUTPUT_DIR
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/e2e_lib.sh"
init_e2e "$@"
train=$(dirname "$app")/vaelab-train  # built beside vaelab; checks the autosave loads

# ---- --help works without a display ----
# Read the whole text first: under pipefail, `--help | grep -q` fails whenever grep stops reading
# before vaelab has written its last line (SIGPIPE), which depends on scheduling.
help_text=$("$app" --help) || fail "--help exits with $?"
grep -q -- "--data PATH" <<<"$help_text" || fail "--help does not describe --data"

start_xvfb
start_app "$out/shots" --frame-stats "$out/frames.csv"
wait_for "$out/shots/ready" 60
echo "window up, first latent codes drawn"
find_window
sleep 3  # let it train a little

shot
[[ $(field state) == running ]] || fail "expected training to run, state is '$(field state)'"
step=$(field step)
((step > 0)) || fail "no training steps after a few seconds"
echo "training: step $step"

# ---- pause with the app's own button ----
click pause_button
is_paused() { [[ $(field state) == paused ]]; }
shoot_until 10 0.5 is_paused || fail "the Pause button did not pause training"
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
click gap_tab1
shoot_until 30 0.5 has_rect posterior_heat || fail "the true posterior heat map did not appear within 15 s"
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
  find_window
  offer_shows() { [[ $(field resume_offer) == 1 ]] && has_rect "$1"; }
  shoot_until 40 0.5 offer_shows "$1" || fail "no offer to resume the autosave within 20 s"
  [[ -e $shot_dir/ready ]] && fail "training started while the resume offer was open"
  click "$1"
  wait_for "$shot_dir/ready" 60
  shot
  [[ $(field resume_offer) == 0 ]] || fail "the resume offer is still open after clicking $1"
}
# Launched without --paused: the run was paused when it was autosaved, and comes back paused.
start_app "$out/shots-resume"
find_window
offer_open() { [[ $(field resume_offer) == 1 ]]; }
shoot_until 40 0.5 offer_open || fail "no offer to resume the autosave within 20 s"
offer_epoch=$(field offer_epoch)
answer_offer resume_button
[[ $(field step) == "$saved_step" ]] || fail "Resume: expected step $saved_step, the app is at step $(field step)"
[[ $(field state) == paused ]] || fail "Resume: the run was paused when autosaved, it came back $(field state)"
[[ $(field epoch) == "$offer_epoch" ]] || fail "Resume: the offer showed epoch $offer_epoch, the status line epoch $(field epoch)"
(($(field errors) == 0)) || fail "errors shown after resuming"
echo "resumed at step $saved_step"
# Started and quit while running (quitting stops the trainer, which pauses it): it comes back running.
click pause_button
running_on() { [[ $(field state) == running ]] && (($(field step) > saved_step)); }
shoot_until 40 0.5 running_on || fail "Start did not resume training"
close_app
start_app "$out/shots-running"
find_window
shoot_until 40 0.5 offer_open || fail "no offer to resume the autosave of the running run"
answer_offer resume_button
[[ $(field state) == running ]] || fail "Resume: the run was running when autosaved, it came back $(field state)"
echo "a run quit while running came back running"
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
find_window
shows_errors() { (($(field errors) > 0)); }
shoot_until 30 1 shows_errors || fail "no error message in the window after poisoning the weights"
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
