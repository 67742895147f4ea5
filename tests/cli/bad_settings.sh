#!/usr/bin/env bash
# Bad settings from the command line: latent 0 or 100,000, batch 0, a negative learning rate, a
# data folder with no images (or none at all), and a checkpoint whose image size differs from the
# data's. vaelab-train must exit 2 (bad setting) or 1 (file or training error) with a message that
# names the problem; vaelab must refuse the same flags with the same words and exit 2 before
# opening a window (both read them through one flag table).
# Not the app's form (the e2e test and docs/reliability.md cover that); usage: bad_settings.sh TRAIN APP
set -uo pipefail
train=${1:?usage: bad_settings.sh VAELAB_TRAIN [VAELAB]}
app=${2:-}
work=$(mktemp -d "${TMPDIR:-/tmp}/vaelab-cli-XXXXXX")
trap 'rm -rf "$work"' EXIT
passed=0 failed=0

# Two tiny IDX data sets (fixed patterns): 40 train / 10 test images of 8×8 and 6×6.
here=$(cd "$(dirname "$0")" && pwd)
python3 "$here/make_idx.py" "$work/set8" 8
python3 "$here/make_idx.py" "$work/set6" 6
mkdir "$work/empty"

expect() {  # expect NAME CODE PATTERN command…: exit code CODE and PATTERN (grep -E) on stderr
  local name=$1 code=$2 pattern=$3
  shift 3
  "$@" >"$work/out" 2>"$work/err"
  local rc=$?
  if ((rc == code)) && grep -Eq -e "$pattern" "$work/err"; then
    passed=$((passed + 1))
    echo "ok   $name: exit $rc: $(head -c 200 "$work/err" | head -n1)"
  else
    failed=$((failed + 1))
    echo "FAIL $name: expected exit $code and /$pattern/, got exit $rc:"
    sed 's/^/     /' "$work/err" | head -n5
  fi
}

quick=(--epochs 1 --threads 1 --hidden 16 --latent 2 --batch 10)
expect "train --latent 0" 2 "--latent wants a whole number from 1 to 1024, not '0'" "$train" --data "$work/set8" --latent 0
expect "train --latent 100000" 2 "--latent wants a whole number from 1 to 1024" "$train" --data "$work/set8" --latent 100000
expect "train --batch 0" 2 "--batch wants a whole number from 1 to 65536" "$train" --data "$work/set8" --batch 0
expect "train --lr -0.001" 2 "--lr wants a number greater than 0, at most 10" "$train" --data "$work/set8" --lr -0.001
expect "train, folder without images" 1 "$work/empty.*(no|not found|missing)" "$train" --data "$work/empty" "${quick[@]}"
expect "train, missing folder" 1 "$work/absent" "$train" --data "$work/absent" "${quick[@]}"
expect "train, save an 8x8 model" 0 "saved checkpoint" "$train" --data "$work/set8" "${quick[@]}" --save "$work/ck8.vaelab"
expect "train, 8x8 checkpoint on 6x6 images" 1 "expects 8×8 images.*has 6×6" \
  "$train" --data "$work/set6" "${quick[@]}" --load "$work/ck8.vaelab"

if [[ -n $app ]]; then
  # The app parses its flags before it opens a window: no display is needed for these.
  expect "vaelab --latent 0" 2 "--latent wants a whole number from 1 to 1024" env -u DISPLAY "$app" --latent 0
  expect "vaelab --latent 100000" 2 "--latent wants a whole number from 1 to 1024" env -u DISPLAY "$app" --latent 100000
  expect "vaelab --batch 0" 2 "--batch wants a whole number from 1 to 65536" env -u DISPLAY "$app" --batch 0
  expect "vaelab --lr -1" 2 "--lr wants a number greater than 0, at most 10" env -u DISPLAY "$app" --lr -1
fi

echo "$passed passed, $failed failed"
((failed == 0))
