#!/usr/bin/env bash
# What vaelab-train refuses, and when: save targets that are not regular files (a device node, a
# FIFO) are refused and left alone, a symbolic link is followed to its file, an unwritable target
# and a configuration the memory cannot hold (also one from --load or --import-safetensors) are
# refused before training, a FIFO or a device given
# to --load / --import-safetensors is refused without blocking, a stray label value that leaves
# most classes unused is refused. Stale temporaries of the save folder go at start. Every run has a time limit, so a
# regression fails instead of hanging, and an address-space limit, so it cannot exhaust the machine.
# usage: refused_inputs.sh VAELAB_TRAIN
set -uo pipefail
train=${1:?usage: refused_inputs.sh VAELAB_TRAIN}
work=$(mktemp -d "${TMPDIR:-/tmp}/vaelab-refused-XXXXXX")
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
ulimit -v 4000000  # 4 GB of address space

# Tiny IDX data sets: 40 train / 10 test images of 8×8 (labels 0-9, or one label of 200) or 28×28, and
# four 1000×1000 images (gzipped, a few KB) for the memory refusal.
python3 - "$work" <<'PY'
import gzip, struct, sys, os
root = sys.argv[1]
def write(folder, name, data, gz=False):
    os.makedirs(os.path.join(root, folder), exist_ok=True)
    path = os.path.join(root, folder, name + (".gz" if gz else ""))
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
        f.write(data)
for folder, side, bad_label in (("set8", 8, None), ("labels200", 8, 200), ("set28", 28, None)):
    for name, n in (("train", 40), ("t10k", 10)):
        px = bytes((i * 37 + j * 11) % 256 for i in range(n) for j in range(side * side))
        write(folder, f"{name}-images-idx3-ubyte", struct.pack(">BBBBIII", 0, 0, 8, 3, n, side, side) + px)
        labels = [i % 10 for i in range(n)]
        if bad_label is not None and name == "train":
            labels[7] = bad_label
        write(folder, f"{name}-labels-idx1-ubyte", struct.pack(">BBBBI", 0, 0, 8, 1, n) + bytes(labels))
for name in ("train", "t10k"):
    write("big", f"{name}-images-idx3-ubyte", struct.pack(">BBBBIII", 0, 0, 8, 3, 4, 1000, 1000) + bytes(4 * 10**6), gz=True)
PY

report() {  # report NAME OK [DETAIL]: count one result and print it (DETAIL, indented, on failure)
  local name=$1 ok=$2 detail=${3:-}
  if ((ok)); then
    passed=$((passed + 1)) && echo "ok   $name"
  else
    failed=$((failed + 1)) && echo "FAIL $name" && [[ -n $detail ]] && sed 's/^/     /' <<<"$detail"
  fi
}
expect() {  # expect NAME CODE PATTERN command…: exit code CODE within 60 s and PATTERN (grep -E) on stderr
  local name=$1 code=$2 pattern=$3
  shift 3
  timeout 60 "$@" >"$work/stdout" 2>"$work/err" </dev/null
  local rc=$? ok=0
  ((rc == code)) && grep -Eq -e "$pattern" "$work/err" && ok=1
  report "$name: exit $rc (expected $code, /$pattern/ on stderr)" $ok "$(head -n5 "$work/err")"
}
check() {  # check NAME command…: a condition on the files afterwards
  local name=$1 ok=0
  shift
  "$@" && ok=1
  report "$name" $ok
}

quick=(--data "$work/set8" --threads 1 --hidden 16 --latent 2 --batch 10)

# Save targets.
mkfifo "$work/fifo.vaelab"
expect "--save onto a FIFO" 1 "fifo.vaelab.*FIFO \(named pipe\), not a regular file" "$train" "${quick[@]}" --epochs 1 --save "$work/fifo.vaelab"
check "the FIFO is still a FIFO" test -p "$work/fifo.vaelab"
if mknod "$work/null.vaelab" c 1 3 2>/dev/null; then
  expect "--save onto a device node" 1 "null.vaelab.*character device, not a regular file" "$train" "${quick[@]}" --epochs 1 --save "$work/null.vaelab"
  check "the device node is still a device node" test -c "$work/null.vaelab"
else
  echo "skip --save onto a device node: mknod needs privileges"
fi
mkdir "$work/real" "$work/links"
expect "save a checkpoint" 0 "saved checkpoint" "$train" "${quick[@]}" --epochs 1 --save "$work/real/model.vaelab"
ln -s ../real/model.vaelab "$work/links/model.vaelab"
before=$(sha256sum <"$work/real/model.vaelab")
expect "--save through a symbolic link" 0 "saved checkpoint" "$train" "${quick[@]}" --epochs 2 --save "$work/links/model.vaelab"
check "the link is still a link" test -L "$work/links/model.vaelab"
check "the link's target has the new checkpoint" test "$(sha256sum <"$work/real/model.vaelab")" != "$before"
check "no temporary is left in either folder" test -z "$(ls "$work/real" "$work/links" | grep '\.tmp\.')"
expect "--save into a missing folder fails before training" 1 "absent/x.vaelab.*cannot create a file in" \
  "$train" "${quick[@]}" --epochs 100000 --save "$work/absent/x.vaelab"
check "...without training" bash -c "! grep -q '^epoch' '$work/err'"
expect "--export-safetensors into a missing folder fails before training" 1 "absent/x.safetensors" \
  "$train" "${quick[@]}" --epochs 100000 --export-safetensors "$work/absent/x.safetensors"
mkdir "$work/saves"
head -c 5000 /dev/zero >"$work/saves/old.vaelab.tmp.999999"
printf 'not a checkpoint' >"$work/not-a-checkpoint"
expect "a run that fails after its start" 1 "not a vaelab checkpoint" \
  "$train" "${quick[@]}" --epochs 1 --load "$work/not-a-checkpoint" --save "$work/saves/x.vaelab"
check "...has removed the stale temporary of its save folder" test ! -e "$work/saves/old.vaelab.tmp.999999"

# Inputs that are not regular files.
expect "--load a FIFO" 1 "fifo.vaelab: is a FIFO \(named pipe\), not a checkpoint file" "$train" "${quick[@]}" --epochs 1 --load "$work/fifo.vaelab"
expect "--import-safetensors a FIFO" 1 "fifo.vaelab: is a FIFO \(named pipe\), not a safetensors file" \
  "$train" "${quick[@]}" --epochs 1 --import-safetensors "$work/fifo.vaelab"
expect "--load /dev/zero" 1 "/dev/zero: is a character device, not a checkpoint file" "$train" "${quick[@]}" --epochs 1 --load /dev/zero

# Memory: refused with the figure and the setting to change, before allocating.
expect "8 hidden layers of 8192, latent 1024" 1 "training needs about [0-9.]+ GB of memory, more than the .* available.*--hidden" \
  "$train" --data "$work/set8" --threads 1 --epochs 1 --hidden 8192,8192,8192,8192,8192,8192,8192,8192 --latent 1024
expect "--batch 65536 --samples 1000" 1 "training needs about [0-9.]+ GB.*--batch.*--samples" \
  "$train" --data "$work/set8" --threads 1 --epochs 1 --batch 65536 --samples 1000
expect "conv --batch 65536" 1 "training needs about [0-9.]+ GB.*--batch" \
  "$train" --data "$work/set28" --threads 1 --epochs 1 --model conv --batch 65536
expect "four 1000x1000 images" 1 "training needs about [0-9.]+ GB.*--hidden" \
  "$train" --data "$work/big" --threads 1 --epochs 1

# Models from files that need more memory than there is: refused with the figure before the file's
# weights are read. A checkpoint whose head asks for a hidden layer of 8192, a batch of 65,536 and
# 1,000 samples (checksum not repaired: the refusal comes first), and a sparse safetensors file of
# 1.7 GB declaring 4 hidden layers of 8192 and a latent of 1024 (the names and order of a real
# export, the sizes scaled).
expect "a checkpoint to change" 0 "exported weights" "$train" "${quick[@]}" --hidden 16,16,16,16 --epochs 1 \
  --save "$work/small.vaelab" --export-safetensors "$work/small.safetensors"
python3 - "$work" <<'PY'
import json, os, struct, sys
root = sys.argv[1]
ck = bytearray(open(os.path.join(root, "small.vaelab"), "rb").read())
# The hidden widths follow their count at 32; then likelihood, σ, family, clusters and channels
# (14 bytes, format 2), the batch, learning rate, β, warm-up and the samples.
(count,) = struct.unpack_from("<Q", ck, 32)
struct.pack_into(f"<{count}i", ck, 40, *([8192] * count))
settings = 40 + 4 * count + 14
struct.pack_into("<i", ck, settings, 65536)
struct.pack_into("<i", ck, settings + 16, 1000)
open(os.path.join(root, "huge.vaelab"), "wb").write(ck)
raw = open(os.path.join(root, "small.safetensors"), "rb").read()
(n,) = struct.unpack_from("<Q", raw, 0)
header = json.loads(raw[8:8 + n])
scale = {16: 8192, 2: 1024}
offset = 0
for name, t in header.items():
    if name == "__metadata__":
        t["latent"] = "1024"
        continue
    t["shape"] = [scale.get(d, d) for d in t["shape"]]
    size = 4
    for d in t["shape"]:
        size *= d
    t["data_offsets"] = [offset, offset + size]
    offset += size
text = json.dumps(header).encode()
with open(os.path.join(root, "huge.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text)
    f.truncate(8 + len(text) + offset)
PY
expect "--load a checkpoint whose model needs too much memory" 1 \
  "huge.vaelab: the model it holds does not fit: training needs about [0-9.]+ GB of memory.*--batch" \
  "$train" "${quick[@]}" --epochs 1 --load "$work/huge.vaelab"
expect "--import-safetensors a model that needs too much memory" 1 \
  "huge.safetensors: the model it holds does not fit: training needs about [0-9.]+ GB of memory.*--hidden" \
  "$train" "${quick[@]}" --epochs 1 --import-safetensors "$work/huge.safetensors"

# Labels beyond the classes in use.
expect "a label of 200" 1 "labels200/train-labels-idx1-ubyte: label 7 is 200, but only 11 different labels appear" \
  "$train" "${quick[@]/$work\/set8/$work/labels200}" --epochs 1

echo "$passed passed, $failed failed"
((failed == 0))
