#!/usr/bin/env bash
# Loading figures: images/s of `vaelab-train --data …` on a folder of 5,000 mixed-size PNG and JPEG
# colour images on one core and on two (taskset: the loader uses the cores it may run on), on the
# Adwaita 48×48 icons, and on the same 5,000 images as one .npy (the bound a folder load
# approaches; loading_vs_torchvision.py is the comparison with PyTorch's way). Not a test: it
# prints figures. The generated images are cached in $CACHE, not the repo.
#
#   tests/bench/loading.sh            # vaelab-train from $VAELAB_TRAIN or build/vaelab-train
set -euo pipefail

EXE=${VAELAB_TRAIN:-${BUILD:-build}/vaelab-train}
CACHE=${CACHE:-/tmp/vaelab-loading-bench}
ICONS=${ICONS:-/usr/share/icons/Adwaita/48x48}
REPEAT=${REPEAT:-3}
FOLDER=$CACHE/mixed
NPY=$CACHE/mixed_32x32.npy
PER_SIZE=500  # images per size: ten sizes, 5,000 images

[[ -x $EXE ]] || { echo "loading.sh: no vaelab-train at $EXE (set VAELAB_TRAIN or BUILD)" >&2; exit 1; }
command -v convert >/dev/null || { echo "loading.sh: needs ImageMagick's convert" >&2; exit 1; }

# Ten sizes from 32×32 to 320×240, square and not; plasma fractals (smooth colour, as photos
# compress) rather than noise. Even-numbered sizes are PNG, odd ones JPEG, in two class folders.
make_folder() {
  local sizes=(32x32 48x40 64x64 96x72 128x96 100x150 160x160 200x120 256x256 320x240)
  rm -rf "$FOLDER.tmp"
  mkdir -p "$FOLDER.tmp/a" "$FOLDER.tmp/b"
  local i=0
  for size in "${sizes[@]}"; do
    local ext=png; (( i % 2 )) && ext=jpg
    local class=a; (( i >= 5 )) && class=b
    local plasmas=()
    for ((k = 0; k < PER_SIZE; ++k)); do plasmas+=(plasma:); done
    convert -seed $((i + 1)) -size "$size" "${plasmas[@]}" -quality 90 +adjoin \
      "$FOLDER.tmp/$class/img_${size}_%03d.$ext"
    i=$((i + 1))
  done
  mv "$FOLDER.tmp" "$FOLDER"
}

# The same pixels vaelab loads (each image resized to 32×32, vaelab's size for mixed sizes) as one
# N×32×32×3 uint8 array, in the sorted order of the files.
make_npy() {
  local raw=$CACHE/mixed_32x32.rgb
  local files
  mapfile -t files < <(find "$FOLDER" -type f | sort)
  convert "${files[@]}" -resize '32x32!' rgb:"$raw"
  /usr/bin/python3 - "$raw" "$NPY" <<'EOF'
import sys
import numpy as np
pixels = np.fromfile(sys.argv[1], dtype=np.uint8)
np.save(sys.argv[2], pixels.reshape(-1, 32, 32, 3))
EOF
  rm -f "$raw"
}

[[ -d $FOLDER ]] || { echo "making $((10 * PER_SIZE)) images in $FOLDER (once)…" >&2; make_folder; }
[[ -f $NPY ]] || { echo "making $NPY (once)…" >&2; make_npy; }

# Seconds of one vaelab-train run that loads the data, evaluates one test image and exits.
seconds_to_load() {
  local cores=$1 data=$2
  local t0 t1
  t0=$(date +%s.%N)
  taskset -c "$cores" "$EXE" --data "$data" --epochs 0 --eval-limit 1 >/dev/null 2>"$CACHE/stderr" ||
    { cat "$CACHE/stderr" >&2; exit 1; }
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }'
}

# The fastest of $REPEAT runs (a neighbour only ever slows a run down), as images/s.
report() {
  local what=$1 cores=$2 data=$3 count=$4
  local best=
  for ((r = 0; r < REPEAT; ++r)); do
    local s; s=$(seconds_to_load "$cores" "$data")
    if [[ -z $best ]] || awk -v s="$s" -v b="$best" 'BEGIN { exit !(s < b) }'; then best=$s; fi
  done
  printf '%-44s %-6s %7d %8.3f %9.0f\n' "$what" "$cores" "$count" "$best" "$(awk -v n="$count" -v s="$best" 'BEGIN { print n / s }')"
}

count_images() { find "$1" -type f \( -name '*.png' -o -name '*.jpg' \) | wc -l; }

echo "vaelab-train --data D --epochs 0 --eval-limit 1: best of $REPEAT, whole process (start, load, exit)"
echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-44s %-6s %7s %8s %9s\n' data cores images seconds images/s
mixed=$(count_images "$FOLDER")
report "5,000 mixed PNG+JPEG (32x32..320x240)" 0 "$FOLDER" "$mixed"
report "5,000 mixed PNG+JPEG (32x32..320x240)" 0,1 "$FOLDER" "$mixed"
if [[ -d $ICONS ]]; then
  icons=$(count_images "$ICONS")
  report "Adwaita 48x48 icons (PNG, alpha)" 0 "$ICONS" "$icons"
  report "Adwaita 48x48 icons (PNG, alpha)" 0,1 "$ICONS" "$icons"
fi
report "the same 5,000 as one .npy (32x32x3 uint8)" 0 "$NPY" "$mixed"
report "the same 5,000 as one .npy (32x32x3 uint8)" 0,1 "$NPY" "$mixed"
