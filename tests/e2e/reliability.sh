#!/usr/bin/env bash
# End-to-end reliability checks of the desktop app under Xvfb (issue 23, app side): a one-launch
# --autosave-minutes 0 is never written to vaelab.ini, and the next launch autosaves again; a saved
# window larger than the screen is fitted to it with a warning; a temporary left by a killed save is
# removed at start; the model form shows the memory estimate; SIGHUP (the terminal closed) quits
# with the exit autosave, as SIGTERM does; a shorter run's exit autosave keeps the longer one; a
# second instance on the same data folder autosaves under its own name, and the next launch's
# resume offer lists both and resumes the second's; an exit autosave that fails (a read-only folder)
# keeps the window open with why, and "Save elsewhere" saves the run to the suggested path; a long
# IWAE evaluation shows a progress bar whose Cancel stops it.
# Not the resume offer (run_e2e.sh drives that); usage: reliability.sh path/to/vaelab OUTPUT_DIR
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/e2e_lib.sh"
init_e2e "$@"
start_xvfb
ini=$out/config/vaelab/vaelab.ini
mkdir -p "$out/config/vaelab" "$out/data/vaelab"
printf '[vaelab][prefs]\nwindow_w=16384\nwindow_h=150\n\n' >"$ini"
stale=$out/data/vaelab/checkpoint.vaelab.tmp.4242  # as a save killed mid-write leaves it
echo partial >"$stale"

# ---- launch 1: --autosave-minutes 0 (this launch only), the saved 16384×150 window ----
"$app" --data "$data" --train-limit 2000 --screenshot-dir "$out/shots" --autosave-minutes 0 >>"$out/app.log" 2>&1 &
app_pid=$!
shot_dir=$out/shots shots=0
wait_for "$out/shots/ready" 60
find_window
shot
[[ -e $stale ]] && fail "the stale temporary $stale is still there after the start"
echo "stale temporary removed at start"
grep -q "larger than the screen" "$out/app.log" || fail "no warning about the 16384×150 window"
sleep 2
close_app
grep -q "autosaved step" "$out/app.log" && fail "--autosave-minutes 0 still autosaved on exit"
grep -q '^autosave_minutes=0' "$ini" && fail "--autosave-minutes 0 (one launch) was written into $ini"
w=$(awk -F= '$1 == "window_w" { print $2 }' "$ini") h=$(awk -F= '$1 == "window_h" { print $2 }' "$ini")
((w > 0 && w <= 1280 && h > 0 && h <= 800)) || fail "the window is ${w}×${h} on a 1280×800 screen"
echo "one-launch autosave setting not persisted; window fitted to ${w}×${h}"

# ---- launch 2: no flag, so autosave is on again; SIGHUP quits with the exit autosave ----
# Only the prefs stay: the panel layout of a 150-pixel-high window would hide the model form.
awk '/^\[/ { keep = ($0 == "[vaelab][prefs]") } keep' "$ini" >"$ini.prefs" && mv "$ini.prefs" "$ini"
start_app "$out/shots-hup"
wait_for "$out/shots-hup/ready" 60
find_window
trained_past_10() { (($(field step) > 10)); }  # more than the shorter run of launch 3
shoot_until 60 0.5 trained_past_10 || fail "not past step 10 after 30 s of training"
# The model form shows what training its model needs against the memory available.
click model_settings
has_memory() { [[ $(line memory) == "training needs about "*" available"* ]]; }
shoot_until 10 0.5 has_memory || fail "the model form shows no memory estimate ('$(line memory)')"
echo "model form: $(line memory)"
kill -HUP "$app_pid"
for _ in $(seq 200); do alive || break; sleep 0.1; done
alive && fail "vaelab did not exit within 20 s of SIGHUP"
wait "$app_pid"
rc=$?
app_pid=""
((rc == 0)) || fail "vaelab exited with code $rc after SIGHUP"
grep -q "autosaved step .* to .*autosave.vaelab" "$out/app.log" || fail "SIGHUP quit without the exit autosave"
[[ -s $out/data/vaelab/autosave.vaelab ]] || fail "no autosave after SIGHUP"
echo "SIGHUP: exit code 0 with the autosave ($(grep -o 'autosaved step [0-9]*' "$out/app.log" | tail -1))"
hup_step=$(grep -o 'autosaved step [0-9]*' "$out/app.log" | tail -1 | grep -o '[0-9]*$')

# ---- launch 3: a shorter run (--no-resume; it diverges and pauses at step 5) must keep the longer autosave ----
start_app "$out/shots-short" --no-resume --poison-at-step 5
wait_for "$out/shots-short/ready" 60
find_window
is_paused() { [[ $(field state) == paused ]]; }
shoot_until 30 0.5 is_paused || fail "the poisoned run did not pause"
kill -TERM "$app_pid"
for _ in $(seq 200); do alive || break; sleep 0.1; done
alive && fail "vaelab did not exit within 20 s of SIGTERM"
wait "$app_pid"
app_pid=""
aside=$out/data/vaelab/autosave.previous.vaelab
grep -q "longer run; it was kept as $aside" "$out/app.log" || fail "the shorter run's autosave did not keep the $hup_step-step one"
[[ -s $aside ]] || fail "no $aside after the shorter run"
echo "shorter run: the $hup_step-step autosave was kept as $(basename "$aside")"
# ---- launch 4: two instances on one data folder; the second autosaves under its own name ----
start_app "$out/shots-first" --no-resume
first_pid=$app_pid
wait_for "$out/shots-first/ready" 60
start_app "$out/shots-second" --no-resume
second_pid=$app_pid
wait_for "$out/shots-second/ready" 60
sleep 3
kill -TERM "$first_pid" "$second_pid"
wait "$first_pid" || fail "the first instance exited with code $?"
wait "$second_pid" || fail "the second instance exited with code $?"
app_pid=""
grep -q "autosaved step [0-9]* to .*/autosave-$second_pid.vaelab" "$out/app.log" ||
  fail "the second instance did not autosave beside the first under its own name"
[[ -s $out/data/vaelab/autosave-$second_pid.vaelab && -s $out/data/vaelab/autosave.vaelab ]] || fail "one of the two autosaves is missing"
echo "two instances: autosave.vaelab and autosave-$second_pid.vaelab"

# ---- launch 5: the resume offer lists both autosaves; resuming the second instance's works ----
second_step=$(grep -o "autosaved step [0-9]* to .*/autosave-$second_pid.vaelab" "$out/app.log" | grep -o 'step [0-9]*' | grep -o '[0-9]*')
start_app "$out/shots-offers"
find_window
two_offers() { (($(field offers) == 2)) && has_rect resume_button_1; }
shoot_until 40 0.5 two_offers || fail "the resume offer does not list both autosaves ($(field offers) offers)"
awk '$1 == "offer"' "$info" | grep "autosave-$second_pid.vaelab step $second_step" >/dev/null ||
  fail "the offer does not show autosave-$second_pid.vaelab at step $second_step: $(awk '$1 == "offer"' "$info" | tr '\n' ';')"
click resume_button_1
wait_for "$out/shots-offers/ready" 60
shot
[[ $(field resume_offer) == 0 ]] || fail "the resume offer is still open after Resume"
[[ $(field step) == "$second_step" ]] || fail "resuming autosave-$second_pid.vaelab: expected step $second_step, the app is at $(field step)"
[[ -e $out/data/vaelab/autosave-$second_pid.previous.vaelab && ! -e $out/data/vaelab/autosave-$second_pid.vaelab ]] ||
  fail "the resumed autosave-$second_pid.vaelab was not kept aside as autosave-$second_pid.previous.vaelab"
echo "resume offer: both autosaves listed; resumed the second instance's at step $second_step"
close_app

# ---- launch 6: the exit autosave fails (read-only folder): the window stays open and saves elsewhere ----
# As root a read-only bind mount in the app's own mount namespace (permissions do not stop root),
# otherwise the folder's write permission.
folder=$out/data/vaelab
mkdir -p "$out/home"
if ((EUID == 0)); then
  launch=(unshare -m --propagation private bash -c 'd=$1; shift; mount --bind "$d" "$d" && mount -o remount,bind,ro "$d" && exec "$@"' _ "$folder")
else
  chmod a-w "$folder"
  launch=()
fi
shot_dir=$out/shots-readonly shots=0
HOME=$out/home "${launch[@]}" "$app" --data "$data" --train-limit 2000 --size 1280x800 --screenshot-dir "$shot_dir" --no-resume \
  >>"$out/app.log" 2>&1 &
app_pid=$!
wait_for "$shot_dir/ready" 60
find_window
trained() { (($(field step) > 0)); }
shoot_until 60 0.5 trained || fail "no training step in the read-only launch"
xdotool windowfocus --sync "$wid" 2>/dev/null || true
xdotool key --clearmodifiers ctrl+q
dialog_open() { [[ $(field exit_dialog) == 1 ]] && has_rect save_elsewhere_button; }
shoot_until 40 0.5 dialog_open || fail "no exit dialog after the exit autosave failed (the app is $(alive && echo running || echo gone))"
echo "exit dialog: $(line exit_error)"
[[ -n $(line exit_error) ]] || fail "the exit dialog does not say why the autosave failed"
sleep 1
alive || fail "vaelab exited although its exit autosave failed"
shot  # the dialog's rectangles once its size has settled (it sizes itself on its first frames)
elsewhere=$out/home/vaelab-unsaved-$app_pid.vaelab
click save_elsewhere_button
for _ in $(seq 200); do alive || break; sleep 0.1; done
alive && fail "vaelab did not exit after Save elsewhere"
wait "$app_pid"
rc=$?
app_pid=""
((EUID == 0)) || chmod u+w "$folder"
((rc == 0)) || fail "vaelab exited with code $rc after Save elsewhere"
[[ $(head -c 8 "$elsewhere" 2>/dev/null) == VAELABCK ]] || fail "no checkpoint at the suggested $elsewhere"
grep -q "saved step [0-9]* to $elsewhere" "$out/app.log" || fail "the log does not say where the run was saved"
echo "exit autosave failed; the run was saved elsewhere: $(basename "$elsewhere")"

# ---- launch 7: a long IWAE evaluation (K = 5,000, the gap window's largest, on 500 images) shows its progress; Cancel stops it ----
start_app "$out/shots-iwae" --no-resume --train-limit 200 --iwae 5000 --iwae-points 500
wait_for "$out/shots-iwae/ready" 60
find_window
evaluating() { has_rect iwae_cancel; }
shoot_until 60 0.5 evaluating || fail "no IWAE progress bar with Cancel within 30 s"
shot  # the bar's rectangles once the window has settled
click iwae_cancel
# (the next epoch, two steps later, starts the next evaluation: the log says this one stopped)
cancelled() { [[ $(line log) == "IWAE_5000 cancelled after "* ]]; }
shoot_until 20 0.5 cancelled || fail "Cancel did not stop the IWAE evaluation within 10 s (log: '$(line log)')"
echo "IWAE progress bar shown; Cancel: $(line log)"
close_app
echo "PASS (screenshots: $out/shots, $out/shots-hup, $out/shots-short, $out/shots-first, $out/shots-second, $out/shots-offers, $out/shots-readonly, $out/shots-iwae)"
