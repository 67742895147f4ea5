#!/usr/bin/env bash
# End-to-end test of the model-settings form under Xvfb, as a user does it: open "Model settings",
# choose "convolutional" and latent 10 with the mouse and keyboard, press "Rebuild model…" and
# check the form keeps the edits behind the confirmation, save the run from there, confirm, and read from the app's state
# dump that the running model and the trainer's log follow the form; started, the latent map
# shows the new codes on a PCA plane.
# Not a unit test of the form; usage: model_form.sh path/to/vaelab OUTPUT_DIR
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/e2e_lib.sh"
init_e2e "$@"
start_xvfb

start_app "$out/shots" --paused --no-resume --latent 2
wait_for "$out/shots/ready" 60
find_window
shot
[[ $(line model) == "mlp "*", latent 2" ]] || fail "expected the MLP with latent 2 at start, the model is '$(line model)'"
[[ $(line map) == "z1 vs z2" ]] || fail "expected the map of a 2-d latent to show z1 vs z2, it shows '$(line map)'"

# ---- open the form, choose the convolutional family and latent 10 ----
click model_settings
sleep 0.5
shot
click form_family
sleep 0.5
shot
click form_family_1  # "convolutional"
sleep 0.3
shot
click form_latent
sleep 0.2
press ctrl+a
xdotool type --delay 80 10
press Tab
sleep 0.5
shot
[[ $(line form) == "convolutional, latent 10, edited" ]] || fail "the form shows '$(line form)' after the edits"
echo "form edited: $(line form)"

# ---- Rebuild: the confirmation opens and the form stays as edited behind it ----
click form_rebuild
shoot_until 10 0.3 has_rect rebuild_confirm || fail "no confirmation after pressing Rebuild model…"
[[ $(line form) == "convolutional, latent 10, edited" ]] || fail "behind the confirmation the form snapped back to '$(line form)'"
echo "confirmation open, form still edited"
click rebuild_save  # "Save first": the running model goes to the checkpoint path, the box stays
wait_for "$out/data/vaelab/checkpoint.vaelab" 20
sleep 0.5
shot
[[ -n $(rect rebuild_confirm) && $(line model) == "mlp "*", latent 2" ]] || fail "Save first did not keep the confirmation open"
echo "saved the running model first"
click rebuild_confirm

# ---- the running model and the log follow the form ----
runs_conv10() { [[ $(line model) == "conv "*", latent 10" ]]; }
shoot_until 40 0.5 runs_conv10 || fail "expected a conv model with latent 10, the app runs '$(line model)'"
[[ $(line log) == "rebuilt the model: "*"latent 10"* ]] || fail "the log's last line is '$(line log)'"
[[ $(line form) == "convolutional, latent 10" ]] || fail "after the rebuild the form shows '$(line form)'"
(($(field errors) == 0)) || fail "errors shown after the rebuild"
echo "rebuilt: $(line model); log: $(line log)"

# ---- the map shows the new 10-d codes on their PCA plane while still paused ----
shows_pca() { [[ $(line map) == "PCA plane, "* ]]; }
shoot_until 40 0.5 shows_pca || fail "expected the map to show a PCA plane of the 10-d codes, it shows '$(line map)'"
[[ $(field state) == paused ]] || fail "the rebuilt model started training without Start"

# ---- Start trains it ----
click pause_button  # "Start"
is_running() { [[ $(field state) == running ]]; }
shoot_until 20 0.5 is_running || fail "Start did not start training the rebuilt model"
echo "training the rebuilt model: map $(line map)"
close_app
echo "PASS (screenshots: $out/shots)"
