#!/usr/bin/env bash
# End-to-end test of the file chooser, the help pages and drag-and-drop under Xvfb, as a user does
# them: File → Open data… opens the in-window chooser, the path field goes to a folder the test
# made, a click selects a data folder in the listing and Open reads it (the state dump names the
# new data, and the recent path is kept in the settings); a panel's (?) opens its help page, and
# Help → "What am I looking at" the first; a folder dropped on the window (the --drop-list test
# hook: xdotool cannot drag between programs) loads at once (Cancel while it reads keeps the data
# that was open), and once the run has trained a drop asks first and loads on Open; Save
# checkpoint as… saves under a typed name.
# Not a unit test of the listing (tests/test_file_listing.cpp); usage: chooser.sh path/to/vaelab OUTPUT_DIR
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/e2e_lib.sh"
init_e2e "$@"
start_xvfb

# Two data folders to choose and drop (links to the test data's files), and things the data
# filter leaves out.
pick="$out/pick"
mkdir -p "$pick/first" "$pick/second" "$pick/.hidden-folder"
for f in "$data"/*; do ln -s "$f" "$pick/first/"; ln -s "$f" "$pick/second/"; done
echo notes >"$pick/notes.txt"
drops="$out/drop-list"

start_app "$out/shots" --paused --no-resume --drop-list "$drops"
wait_for "$out/shots/ready" 60
find_window
shot
original=$(line data)
[[ -n $original && $(line chooser) == closed ]] || fail "expected data and a closed chooser at start (data '$original', chooser '$(line chooser)')"

from_file_menu() {  # from_file_menu ITEM TITLE: click File, then ITEM; the chooser titled TITLE opens
  click menu_file
  sleep 0.5
  shot
  click "$1"
  chooser_is() { [[ $(line chooser) == "$1" ]]; }
  shoot_until 10 0.3 chooser_is "$2" || fail "File → $2 did not open the chooser (chooser '$(line chooser)')"
}

# ---- File → Open data…: go to the test's folder by the path field, select "first", Open ----
from_file_menu menu_open_data "Open data"
click chooser_path
sleep 0.2
press ctrl+a
xdotool type --delay 20 "$pick"
press Return
in_pick() { [[ $(line chooser_folder) == "$pick" ]]; }
shoot_until 10 0.3 in_pick || fail "the path field did not take the chooser to $pick (it lists '$(line chooser_folder)')"
has_rect chooser_entry_first || fail "the listing of $pick has no entry 'first'"
echo "chooser lists $(line chooser_folder)"
click chooser_entry_first
sleep 0.3
shot
click chooser_choose
opened_first() { [[ $(line data) == first && $(field loading) == 0 && $(line chooser) == closed ]]; }
shoot_until 40 0.5 opened_first || fail "choosing $pick/first did not open it (data '$(line data)', loading $(field loading), chooser '$(line chooser)')"
[[ $(line data_path) == "$pick/first" ]] || fail "the data field shows '$(line data_path)', not $pick/first"
(($(field errors) == 0)) || fail "errors shown after opening the chosen folder"
echo "opened through the chooser: $(line data) ($(line data_path))"

# ---- a panel's (?) opens its page; the Help menu the first page ----
click help_Decoder
shows_decoder_help() { [[ $(line help_page) == Decoder ]]; }
shoot_until 10 0.3 shows_decoder_help || fail "the Decoder's (?) did not open its help page (help_page '$(line help_page)')"
echo "help: $(line help_page)"
click menu_help
sleep 0.5
shot
click menu_help_pages
shows_first_help() { [[ $(line help_page) == Training ]]; }
shoot_until 10 0.3 shows_first_help || fail "Help → What am I looking at did not show the Training page (help_page '$(line help_page)')"
echo "help menu: $(line help_page)"

# ---- a drop before any training reads at once; Cancel while it reads keeps the data open ----
echo "$pick/second" >"$drops"
kill -USR2 "$app_pid"
sleep 0.05
shot
if (($(field loading) == 1)); then
  read -r x0 y0 x1 y1 <<<"$(rect loading_cancel)"  # a quicker click than click(): the read is short
  xdotool mousemove --window "$wid" $(((${x0%.*} + ${x1%.*}) / 2)) $(((${y0%.*} + ${y1%.*}) / 2)) mousedown 1
  sleep 0.1
  xdotool mouseup 1
  read_ended() { (($(field loading) == 0)); }
  shoot_until 40 0.5 read_ended || fail "the read of $pick/second did not end after Cancel"
  if [[ $(line data) == first ]]; then
    [[ $(line data_path) == "$pick/first" ]] || fail "after Cancel the data field shows '$(line data_path)', not $pick/first"
    echo "cancelled the read: still on $(line data)"
    kill -USR2 "$app_pid"  # the same drop again, left to finish
  else
    echo "the read of $pick/second ended before Cancel arrived: not checked"
  fi
else
  echo "the read of $pick/second ended before the screenshot: Cancel not checked"
fi
opened_second() { [[ $(line data) == second && $(field loading) == 0 ]]; }
shoot_until 40 0.5 opened_second || fail "the dropped $pick/second did not open (data '$(line data)', loading $(field loading))"
echo "dropped and opened: $(line data)"

# ---- once the run has trained, a drop asks first; Open loads it ----
click pause_button  # Start
trained() { (($(field step) > 0)); }
shoot_until 40 0.5 trained || fail "training did not start"
echo "$pick/first" >"$drops"
kill -USR2 "$app_pid"
asks() { [[ $(line drop_pending) == "$pick/first" ]]; }
shoot_until 10 0.3 asks || fail "a drop over a trained run did not ask first"
[[ $(line data) == second ]] || fail "the drop opened before the answer (data '$(line data)')"
click drop_confirm
opened_first_again() { [[ $(line data) == first && $(field loading) == 0 && -z $(line drop_pending) ]]; }
shoot_until 40 0.5 opened_first_again || fail "Open in the drop's confirmation did not open $pick/first (data '$(line data)')"
(($(field errors) == 0)) || fail "errors shown after the drops"
echo "confirmed drop opened: $(line data)"

# ---- File → Save checkpoint as…: a typed name gets the .vaelab suffix, in the checkpoint's folder ----
from_file_menu menu_save_as "Save checkpoint as"
[[ $(line chooser_folder) == "$out/data/vaelab" ]] || fail "Save as opened in '$(line chooser_folder)', not the checkpoint's folder"
click chooser_name
sleep 0.2
press ctrl+a
xdotool type --delay 20 mine
press Return
wait_for "$out/data/vaelab/mine.vaelab" 20
echo "saved as $out/data/vaelab/mine.vaelab"

close_app
grep -qx "recent_path=$out/data/vaelab/mine.vaelab" "$out/config/vaelab/vaelab.ini" || fail "the saved checkpoint is not among the recent paths"
grep -qx "recent_path=$pick/first" "$out/config/vaelab/vaelab.ini" || fail "the chosen folder is not among the recent paths in the settings"
echo "PASS (screenshots: $out/shots)"
