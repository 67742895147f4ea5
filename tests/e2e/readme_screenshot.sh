#!/usr/bin/env bash
# Takes the README's screenshot of the app on colour data under a private Xvfb: Adwaita's colour
# icons (48×48, one class per name prefix with at least 12 icons) at --image-size 32, after a
# minute of training, the first decoder slider dragged right and the Manifold tab shown.
# Not a test (no CTest entry, nothing checked); usage:
#   readme_screenshot.sh path/to/vaelab OUTPUT_DIR WxH OUT.png   (e.g. 1280x800 assets/screenshots/vaelab.png)
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/e2e_lib.sh"
icons=/usr/share/icons/Adwaita/48x48
VAELAB_E2E_DATA=$icons init_e2e "$1" "$2"  # skips without Xvfb, xdotool or adwaita-icon-theme
screen=${3:?usage: readme_screenshot.sh VAELAB OUTPUT_DIR WxH OUT.png}
png=${4:?usage: readme_screenshot.sh VAELAB OUTPUT_DIR WxH OUT.png}
command -v convert >/dev/null || skip "ImageMagick's convert is not installed"

# The colour icons (the symbolic ones are grey glyphs), a class per name prefix: face-…, folder-…
data="$out/adwaita-colour"
for f in "$icons"/*/*.png; do
  name=$(basename "$f" .png)
  [[ $name == *symbolic* ]] && continue
  mkdir -p "$data/${name%%-*}"
  cp "$f" "$data/${name%%-*}/"
done
for class in "$data"/*/; do (($(find "$class" -name '*.png' | wc -l) >= 12)) || rm -r "$class"; done
echo "$(find "$data" -name '*.png' | wc -l) icons in $(find "$data" -mindepth 1 -type d | wc -l) classes"

start_xvfb "$screen"
app_size=$screen
start_app "$out/shots" --no-resume --image-size 32
wait_for "$out/shots/ready" 60
find_window
sleep 60
shot
click tab_manifold
sleep 0.5
read -r x0 y0 x1 y1 <<<"$(rect decoder_slider0)"  # a click at 80 % of the slider sets z ≈ +1.8
xdotool mousemove --window "$wid" $((${x0%.*} + (${x1%.*} - ${x0%.*}) * 8 / 10)) $(((${y0%.*} + ${y1%.*}) / 2))
sleep 0.2
xdotool mousedown 1  # held over a few frames, as click() does: a busy app may draw slowly
sleep 0.2
xdotool mouseup 1
xdotool mousemove --window "$wid" 1 1  # no hover highlight in the picture
sleep 1
shot
convert "${info%.txt}-window.png" -strip "$png"
(($(stat -c %s "$png") <= 400000)) || convert "${info%.txt}-window.png" -strip +dither -colors 256 "$png"  # README-sized
echo "$png: $(identify -format '%wx%h, %b' "$png"); step $(field step), $(line model), data $(line data)"
close_app
