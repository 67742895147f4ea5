#!/usr/bin/env bash
# End-to-end test of the panel layout under Xvfb: launched at 1024×640, 1280×800 and 1920×1080,
# every panel lies inside the window, none is smaller than its minimum, no title or status text is
# cut off without an ellipsis; a layout saved at 1280×800 (one panel moved by the user) reopens at
# 1920×1080 and 1024×640 filling the window, with the moved panel where the user put it, scaled, as
# does the live window resized; one saved without the Clusters panel reopens as the default tiling;
# a remembered 1500×900 window reopens inside a --size 1024x640
# window and on a 1024×640 screen; View → Reset layout restores the tiling; Interpolation and the
# Variational gap are on screen together, Manifold a click away; for the clustering VAE the map's
# scores fit and the Clusters panel draws its rows and (not blank) decoded images.
# Otherwise not a test of what the panels draw; usage: layout.sh path/to/vaelab OUTPUT_DIR
set -uo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/e2e_lib.sh"
init_e2e "$@"
start_xvfb 1920x1080

# launch CONFIG_NAME SHOT_DIR [options…]: the app with its own settings folder, until its first frame
# with codes on the map, then a state dump
launch() {
  export XDG_CONFIG_HOME="$out/config-$1"
  mkdir -p "$XDG_CONFIG_HOME"
  start_app "$out/$2" --paused --no-resume "${@:3}"
  wait_for "$out/$2/ready" 60
  find_window
  sleep 0.5
  shot
}

# check_fits W H [TEXT…]: the window is W×H; every panel inside it, at least its minimum, its title whole;
# every fitted text (the menu's summary, the training state and the named TEXTs among them) shown
# whole or with an ellipsis; the panels cover ≥ 90 % of the work area
check_fits() {
  local w=$1 h=$2 x0 y0 x1 y1 min_w min_h title_w name top ww wh
  read -r _ top ww wh <<<"$(line work)"  # the window below the menu bar
  [[ -n ${wh:-} ]] || fail "no work area in the state dump $info"
  awk -v w="$ww" -v h="$(awk -v a="$top" -v b="$wh" 'BEGIN { print a + b }')" -v W="$w" -v H="$h" \
    'BEGIN { exit !(w == W && h == H) }' || fail "the window is ${ww}×(${top}+${wh}), expected ${w}×${h}"
  local panels=0
  while read -r x0 y0 x1 y1 min_w min_h title_w name; do
    panels=$((panels + 1))
    awk -v x0="$x0" -v y0="$y0" -v x1="$x1" -v y1="$y1" -v W="$w" -v H="$h" -v top="$top" \
      'BEGIN { exit !(x0 >= 0 && y0 >= top && x1 <= W + 0.5 && y1 <= H + 0.5) }' ||
      fail "panel '$name' at ($x0,$y0)-($x1,$y1) is not inside the ${w}×${h} window"
    awk -v a="$x1" -v b="$x0" -v c="$y1" -v d="$y0" -v mw="$min_w" -v mh="$min_h" \
      'BEGIN { exit !(a - b >= mw - 0.5 && c - d >= mh - 0.5) }' ||
      fail "panel '$name' is $(awk -v a="$x1" -v b="$x0" 'BEGIN { print a - b }') wide, smaller than its minimum ${min_w}×${min_h}"
    awk -v a="$x1" -v b="$x0" -v t="$title_w" 'BEGIN { exit !(t <= a - b) }' ||
      fail "the title of '$name' ($title_w px) is cut off in a panel $(awk -v a="$x1" -v b="$x0" 'BEGIN { print a - b }') px wide"
  done < <(awk '$1 == "panel" { sub(/^panel /, ""); print }' "$info")
  ((panels == 8)) || fail "expected 8 panels in the state dump, found $panels"
  local cover
  cover=$(field panels_cover)
  awk -v c="$cover" 'BEGIN { exit !(c >= 0.9) }' || fail "the panels cover $cover of the ${w}×${h} window's work area (< 0.9)"
  local texts=0 tname full shown avail ellipsis
  while read -r full shown avail ellipsis tname; do
    texts=$((texts + 1))
    awk -v f="$full" -v s="$shown" -v a="$avail" -v e="$ellipsis" \
      'BEGIN { exit !(s <= a + 0.5 && (f <= a + 0.5 || e == 1)) }' ||
      fail "text '$tname' is $full px wide in $avail px, shown $shown px, ellipsis $ellipsis"
  done < <(awk '$1 == "text" { sub(/^text /, ""); print }' "$info")
  for tname in menu_summary training_state "${@:3}"; do
    awk -v n="$tname" '$1 == "text" && $6 == n { found = 1 } END { exit !found }' "$info" ||
      fail "no fitted text '$tname' in the state dump (drawn without the ellipsis helper?)"
  done
  echo "  ${w}×${h}: $panels panels inside, cover $cover, $texts fitted texts"
}

panel_x0() {  # the left edge of the panel named $1 ("" when it is not on screen)
  awk -v n="$1" '$1 == "panel" { name = $9; for (i = 10; i <= NF; ++i) name = name " " $i; if (name == n) print $2 }' "$info"
}

# ---- fresh starts at the three sizes ----
for size in 1024x640 1280x800 1920x1080; do
  app_size=$size launch "fresh-$size" "fresh-$size"
  check_fits "${size%x*}" "${size#*x}"
  # Interpolation and the Variational gap together; Manifold a click away, then the gap again
  has_rect tab_gap && has_rect tab_manifold || fail "no Manifold / Variational gap tabs at $size"
  [[ $(line shown_tab) == "Variational gap" ]] || fail "the Variational gap is not on screen at $size (shown: '$(line shown_tab)')"
  [[ -n $(panel_x0 Interpolation) ]] || fail "Interpolation is not on screen at $size"
  if [[ $size == 1280x800 ]]; then
    click tab_manifold
    sleep 0.5
    shot
    [[ $(line shown_tab) == Manifold ]] || fail "a click on the Manifold tab shows '$(line shown_tab)'"
    [[ -n $(panel_x0 Interpolation) ]] || fail "Interpolation left the screen with the Manifold tab"
    click tab_gap
    shows_gap() { [[ $(line shown_tab) == "Variational gap" ]]; }
    shoot_until 10 0.3 shows_gap || fail "the Variational gap tab does not come back"
    echo "  Interpolation and the Variational gap on screen together; Manifold one click away"
  fi
  cp "$info" "$out/fresh-$size.txt"
  close_app
done

# ---- the clustering VAE at 1024×640: its map toolbar and status fit, wrapped or cut with an ellipsis;
# the Clusters panel shows its rows and their decoded images, which are not blank ----
app_size=1024x640 launch gmvae gmvae-1024x640 --model gmvae
has_clusters() { awk '$1 == "text" && $6 == "map_clusters" { found = 1 } END { exit !found }' "$info"; }
shoot_until 20 0.5 has_clusters || fail "the clustering VAE's map shows no accuracy / NMI"
check_fits 1024 640 map_clusters
shoot_until 20 0.5 has_rect clusters_images || fail "the Clusters panel shows no decoded cluster means"
has_rect clusters_rows || fail "the Clusters panel shows no rows"
if command -v convert >/dev/null; then
  read -r x0 y0 x1 y1 <<<"$(rect clusters_images)"
  crop=$(awk -v a="$x0" -v b="$y0" -v c="$x1" -v d="$y1" 'BEGIN { printf "%dx%d+%d+%d", c - a - 2, d - b - 2, a + 1, b + 1 }')
  spread=$(convert "${info%.txt}-window.png" -crop "$crop" +repage -colorspace Gray -format '%[fx:standard_deviation]' info:)
  awk -v s="$spread" 'BEGIN { exit !(s > 0.02) }' || fail "the Clusters panel's images are blank (grey spread $spread over $crop)"
  echo "  Clusters: decoded means and samples drawn (grey spread $spread)"
fi
close_app

# ---- a layout saved at 1280×800, with the Decoder moved by the user, reopened larger and smaller ----
app_size=1280x800 launch saved saved-1280
decoder_before=$(panel_x0 Decoder)
# drag_decoder: the Decoder's title bar dragged 80 px left and 40 px down, as a user moves a panel
drag_decoder() {
  local dx=$((${decoder_before%.*} + 60)) dy step
  dy=$(awk '$1 == "work" { print int($3) + 8 }' "$info")
  xdotool mousemove --window "$wid" "$dx" "$dy"
  sleep 0.2
  xdotool mousedown 1
  sleep 0.2
  for step in 1 2 3 4 5 6 7 8; do xdotool mousemove --window "$wid" $((dx - step * 10)) "$((dy + step * 5))"; sleep 0.1; done
  xdotool mouseup 1
  sleep 0.5
  shot
}
drag_decoder
decoder_moved=$(panel_x0 Decoder)
awk -v a="$decoder_moved" -v b="$decoder_before" 'BEGIN { exit !(a < b - 40) }' ||
  fail "dragging the Decoder's title bar did not move it (x $decoder_before → $decoder_moved)"
echo "  moved the Decoder from x=$decoder_before to x=$decoder_moved at 1280×800"
# the live window shrunk and enlarged: every panel follows it
for size in 1024x640 1500x900 1280x800; do
  xdotool windowsize --sync "$wid" "${size%x*}" "${size#*x}" 2>/dev/null || xdotool windowsize "$wid" "${size%x*}" "${size#*x}"
  sleep 1
  shot
  check_fits "${size%x*}" "${size#*x}"
done
# View → Reset layout brings the tiling back
click menu_view
sleep 0.5
shot
click menu_reset_layout
sleep 0.5
shot
awk -v a="$(panel_x0 Decoder)" -v b="$decoder_before" 'BEGIN { exit !(a == b) }' ||
  fail "View → Reset layout left the Decoder at x=$(panel_x0 Decoder) (the tiling has it at $decoder_before)"
echo "  View → Reset layout put the Decoder back at x=$decoder_before"
# and the user's place again, for the launches below
drag_decoder
awk -v a="$(panel_x0 Decoder)" -v b="$decoder_moved" 'BEGIN { exit !(a == b) }' ||
  fail "the second drag put the Decoder at x=$(panel_x0 Decoder), not x=$decoder_moved"
close_app
grep -q '^panel Decoder=' "$out/config-saved/vaelab/vaelab.ini" || fail "the ini keeps no place for the Decoder"
for size in 1920x1080 1024x640; do
  app_size=$size launch saved "saved-$size"
  check_fits "${size%x*}" "${size#*x}"
  expected=$(awk -v x="$decoder_moved" -v w="${size%x*}" 'BEGIN { print x / 1280 * w }')
  awk -v a="$(panel_x0 Decoder)" -v e="$expected" 'BEGIN { d = a - e; exit !(d < 3 && d > -3) }' ||
    fail "at $size the moved Decoder is at x=$(panel_x0 Decoder), expected its fraction of the window (x≈$expected)"
  echo "  reopened at $size: Decoder at x=$(panel_x0 Decoder) (expected ≈$expected)"
  close_app
done

# ---- the same layout as an older version saved it, without the Clusters panel: the default tiling ----
sed -i '/^panel Clusters=/d' "$out/config-saved/vaelab/vaelab.ini"
app_size=1280x800 launch saved saved-without-clusters
check_fits 1280 800
awk -v a="$(panel_x0 Decoder)" -v b="$decoder_before" 'BEGIN { exit !(a == b) }' ||
  fail "a layout saved without the Clusters panel kept the Decoder at x=$(panel_x0 Decoder), not the tiling's x=$decoder_before"
echo "  a layout saved without the Clusters panel reopens as the default tiling (Decoder at x=$decoder_before)"
close_app

# ---- a remembered 1500×900 window: --size 1024x640 wins, and a 1024×640 screen holds it ----
app_size=1500x900 launch remembered remembered-1500
check_fits 1500 900
close_app
grep -q '^window_w=1500' "$out/config-remembered/vaelab/vaelab.ini" || fail "the 1500×900 window size was not remembered"
app_size=1024x640 launch remembered remembered-size-flag
check_fits 1024 640
close_app
kill "$xvfb_pid" 2>/dev/null
wait "$xvfb_pid" 2>/dev/null
start_xvfb 1024x640
app_size="" launch remembered remembered-small-screen
check_fits 1024 640
import -window root "$out/remembered-small-screen/screen.png" 2>/dev/null || true
close_app
echo "PASS (screenshots: $out)"
