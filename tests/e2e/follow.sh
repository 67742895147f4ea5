#!/usr/bin/env bash
# End-to-end test of following a run under Xvfb: vaelab --follow on an empty run folder, then
# python/train_ddp.py writes a latent-2 run into it in two legs (stopped at step 10, then to the end).
# From the app's state dumps: the followed step reaches each leg's last step, the status says
# finished, the decoder image differs between the two followed steps, "Continue here" trains on
# locally from the followed step, and File → Follow a run… (prefilled, kept in the settings) follows
# it again. Not a test of the follower or the trainer's follow mode (tests/test_run_follow.cpp, tests/test_trainer.cpp).
# Usage: follow.sh path/to/vaelab OUTPUT_DIR
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/e2e_lib.sh"
init_e2e "$@"
python=/usr/bin/python3
trainer_py="$(dirname "${BASH_SOURCE[0]}")/../../python/train_ddp.py"
"$python" -c 'import torch' 2>/dev/null || skip "Debian's python3 has no torch (package python3-torch)"
start_xvfb

run="$out/run"
mkdir -p "$run"
train_run() {  # train_run [extra flags…]: one process of the PyTorch trainer into $run
  "$python" "$trainer_py" --run "$run" --data "$data" --train-limit 2000 --eval-limit 500 --epochs 2 \
    --write-every 10 --latent 2 --threads 1 "$@" >>"$out/train.log" 2>&1 || fail "train_ddp.py failed: $(tail -3 "$out/train.log")"
}

start_app "$out/shots" --follow "$run" --latent 2
wait_for "$out/shots/ready" 60
find_window
waiting() { [[ $(line follow_status) == "following $run · waiting for the run…"* ]]; }
shoot_until 40 0.5 waiting || fail "expected to wait for the run, the status is '$(line follow_status)'"
(($(field resume_offer) == 0)) || fail "a resume offer while following"
step_before=$(field step)
sleep 2
shot
[[ $(field step) == "$step_before" ]] || fail "the local trainer stepped while following ($step_before → $(field step))"
echo "following an empty folder: $(line follow_status)"

# ---- first leg: the run stops at step 10 ----
train_run --max-steps 10
at_step() { [[ $(field follow_step) == "$1" && $(field step) == "$1" ]]; }
shoot_until 60 0.5 at_step 10 || fail "expected the followed step 10, the app shows step $(field step), '$(line follow_status)'"
sleep 1  # the decoder redraws the new weights
shot
at_step 10 || fail "the followed step moved on from 10 without a new file"
cp "${info%.txt}-decoder.png" "$out/decoder-step10.png"
(($(field follow_finished) == 0)) || fail "the stopped run shows as finished"
echo "followed step 10: $(line follow_status)"

# ---- second leg: the run resumes and finishes ----
train_run
final_step=$("$python" -c 'import json,sys; print([json.loads(l) for l in open(sys.argv[1])][-1]["step"])' "$run/metrics.jsonl")
finished() { at_step "$final_step" && (($(field follow_finished) == 1)); }
shoot_until 60 0.5 finished || fail "expected the finished run at step $final_step, the app shows '$(line follow_status)'"
sleep 1
shot
[[ $(line follow_status) == *" · finished" ]] || fail "the status line does not say finished: '$(line follow_status)'"
cmp -s "$out/decoder-step10.png" "${info%.txt}-decoder.png" && fail "the decoder image is the same at steps 10 and $final_step"
(($(field errors) == 0)) || fail "errors shown while following"
echo "followed to the end: $(line follow_status)"

# ---- Continue here: local training goes on from the followed step ----
click continue_button
trains_on() { [[ -z $(field follow_step) ]] && (($(field step) > final_step)) && [[ $(field state) == running ]]; }
shoot_until 60 0.5 trains_on || fail "Continue here did not train on from step $final_step (step $(field step), state $(field state), '$(line follow_status)')"
echo "continued here: step $(field step), $(line log)"

# ---- File → Follow a run…: the modal offers the last folder; Follow follows it again ----
click menu_file
shoot_until 10 0.3 has_rect menu_follow || fail "no Follow a run… in the File menu"
click menu_follow
shoot_until 10 0.3 has_rect follow_confirm || fail "Follow a run… opened no dialog"
click follow_confirm
following_again() { [[ $(line follow_status) == "following $run · step $final_step "*" · finished" ]]; }
shoot_until 40 0.5 following_again || fail "Follow in the dialog did not follow $run again: '$(line follow_status)'"
echo "followed again from the menu: $(line follow_status)"
close_app
grep -qxF "follow_folder=$run" "$out/config/vaelab/vaelab.ini" || fail "the settings do not keep the followed folder"
echo "PASS (screenshots: $out/shots)"
