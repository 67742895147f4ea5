#!/usr/bin/env bash
# End-to-end test of colour under Xvfb: a folder of colour shapes (mixed PNG and JPEG, mixed sizes)
# opened with --image-size 24 trains, the state dump says 3 channels, the Decoder's image in the
# window has colour in it, and the decoder's PNG export (its "PNG" button, then the chooser's Save)
# is colour. The same folder read with --channels 1 must show none of it, which is what a build
# drawing one channel would show for the colour run too.
# Not a check of what the images show; usage: colour.sh path/to/vaelab OUTPUT_DIR
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/e2e_lib.sh"
VAELAB_E2E_DATA=/ init_e2e "$@"  # its data folder is not used: the test makes its own below
command -v convert >/dev/null || skip "ImageMagick's convert is not installed"

# ---- 3 classes × 40 images: red circles, gold squares, blue triangles on white ----
# Colours whose mean is itself a colour (a reddish brown): a decoder trained for a few dozen steps
# draws about the mean image at z = 0, so the check does not depend on how far training got
# beyond that. Red, green and blue alone would average to grey.
data="$out/shapes"
RANDOM=18  # the same folder every run
make_image() {  # make_image CLASS INDEX
  local size=$((24 + RANDOM % 17)) ext=png colour shape
  ((${2} % 2)) && ext=jpg
  local c=$((size / 2)) r=$((size / 4 + RANDOM % (size / 6 + 1))) dx=$((RANDOM % 5 - 2)) dy=$((RANDOM % 5 - 2))
  local x=$((c + dx)) y=$((c + dy))
  case $1 in
    red) colour=red shape="circle $x,$y $((x + r)),$y" ;;
    gold) colour=gold shape="rectangle $((x - r)),$((y - r)) $((x + r)),$((y + r))" ;;
    blue) colour=blue shape="polygon $x,$((y - r)) $((x + r)),$((y + r)) $((x - r)),$((y + r))" ;;
  esac
  convert -size "${size}x${size}" xc:white -fill "$colour" -draw "$shape" -quality 92 "$data/$1/$1-$2.$ext" ||
    fail "convert could not write $data/$1/$1-$2.$ext"
}
for class in red gold blue; do
  mkdir -p "$data/$class"
  for i in $(seq 40); do make_image "$class" "$i"; done
done
echo "made $(find "$data" -name '*.png' | wc -l) PNG and $(find "$data" -name '*.jpg' | wc -l) JPEG files in $data"

# chroma FILE [WxH+X+Y]: the mean over pixels of max(R, G, B) − min(R, G, B), from 0 (grey) to 1
chroma() {
  convert "$1" ${2:+-crop "$2" +repage} -fx 'max(r, max(g, b)) - min(r, min(g, b))' -format '%[fx:mean]' info:
}
decoder_chroma() {  # of the Decoder's image in the last screenshot, 2 px inside its rectangle
  local x0 y0 x1 y1
  read -r x0 y0 x1 y1 <<<"$(rect decoder_image)"
  [[ -n ${y1:-} ]] || fail "no rectangle for decoder_image in $info"
  x0=$((${x0%.*} + 2)) y0=$((${y0%.*} + 2)) x1=$((${x1%.*} - 2)) y1=$((${y1%.*} - 2))
  ((x1 - x0 >= 20 && y1 - y0 >= 20)) || fail "the Decoder's image is only $((x1 - x0))×$((y1 - y0)) px"
  chroma "${info%.txt}-window.png" "$((x1 - x0))x$((y1 - y0))+$x0+$y0"
}
above() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a > b) }'; }

trained() { (($(field step) >= 60)); }
start_xvfb

# ---- the colour run: 3 channels, a colour decoder image, a colour PNG export ----
start_app "$out/shots" --no-resume --image-size 24
wait_for "$out/shots/ready" 60
find_window
shoot_until 60 0.5 trained || fail "training did not reach step 60 (step '$(field step)', data '$(line data)')"
[[ $(line data_image) == "3 24 24" ]] || fail "expected 3×24×24 images, the state dump says '$(line data_image)'"
(($(field errors) == 0)) || fail "errors shown while loading the colour folder"
colour=$(decoder_chroma)
echo "colour run: data_image $(line data_image), step $(field step), decoder chroma $colour"
# An image drawn from one channel (grey, or a colour map of one value) measures ~0 here, as the
# grey run below shows; by step 60 the shapes' colours give well above the 0.04 asked.
above "$colour" 0.04 || fail "the Decoder's image has no colour in it (mean chroma $colour)"

click export_png_decoder
chooser_open() { [[ $(line chooser) != closed ]]; }
shoot_until 10 0.3 chooser_open || fail "the decoder's PNG button did not open the chooser"
click chooser_choose
exported() { [[ -n $(find "$out/data" -name 'decoder*.png' -print -quit) ]]; }
for _ in $(seq 100); do exported && break; sleep 0.1; done
exported || fail "no decoder PNG under $out/data after Save"
png=$(find "$out/data" -name 'decoder*.png' -print -quit)
png_chroma=$(chroma "$png")
echo "exported $png: $(identify -format '%wx%h %[type]' "$png"), chroma $png_chroma"
above "$png_chroma" 0.04 || fail "the decoder's PNG export is not in colour (mean chroma $png_chroma)"
close_app

# ---- the same folder as grey: 1 channel, no colour anywhere ----
start_app "$out/grey-shots" --no-resume --image-size 24 --channels 1
wait_for "$out/grey-shots/ready" 60
find_window
shoot_until 60 0.5 trained || fail "the grey run did not reach step 60"
[[ $(line data_image) == "1 24 24" ]] || fail "expected 1×24×24 images with --channels 1, the dump says '$(line data_image)'"
grey=$(decoder_chroma)
echo "grey run: data_image $(line data_image), decoder chroma $grey"
above 0.005 "$grey" || fail "the grey run's Decoder image has colour (mean chroma $grey): the measure is wrong"
close_app
echo "PASS (screenshots: $out/shots, $out/grey-shots)"
