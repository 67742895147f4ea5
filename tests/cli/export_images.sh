#!/usr/bin/env bash
# vaelab-train --export-images DIR: after each epoch E, DIR/samples_E.png (an 8×8 grid of prior
# samples) and DIR/reconstructions_E.png (8 test images over their reconstructions), as PyTorch's
# examples/vae writes them. Checks that both exist for every epoch, are PNGs of the grid's size,
# and are grey (R = G = B everywhere) for grey data or have colour (R ≠ G somewhere) for colour data.
# Not a check of what the images show.
# usage: export_images.sh VAELAB_TRAIN [DATA CHANNELS]   (default: a tiny 8×8 grey IDX set, 1)
set -euo pipefail
train=${1:?usage: export_images.sh VAELAB_TRAIN [DATA CHANNELS]}
work=$(mktemp -d "${TMPDIR:-/tmp}/vaelab-export-XXXXXX")
trap 'rm -rf "$work"' EXIT
data=${2:-$work/data}
channels=${3:-1}
[[ $# -ge 2 ]] || python3 "$(dirname "$0")/make_idx.py" "$data" 8
"$train" --data "$data" --epochs 2 --hidden 16 --latent 2 --batch 10 --threads 1 --export-images "$work/images" \
  2>"$work/err" || { cat "$work/err"; exit 1; }
python3 - "$work/images" "$channels" <<'PY'
import os, struct, sys, zlib

def read_png(path):
    """→ (width, height, rows of RGB bytes) of an 8-bit RGB PNG, unfiltered."""
    b = open(path, "rb").read()
    assert b[:8] == b"\x89PNG\r\n\x1a\n", f"{path}: not a PNG"
    pos, idat, w = 8, b"", None
    while pos < len(b):
        n, kind = struct.unpack(">I4s", b[pos:pos + 8])
        body = b[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, colour = struct.unpack(">IIBB", body[:10])
            assert (depth, colour) == (8, 2), f"{path}: not 8-bit RGB ({depth}, {colour})"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride, rows, prev = zlib.decompress(idat), 3 * w, [], bytearray(3 * w)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - 3] if i >= 3 else 0
            c = prev[i - 3] if i >= 3 else 0
            up = prev[i]
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + up) & 255
            elif f == 3: line[i] = (line[i] + (a + up) // 2) & 255
            elif f == 4:
                p = a + up - c
                pa, pb, pc = abs(p - a), abs(p - up), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else up if pb <= pc else c)) & 255
        rows.append(line)
        prev = line
    return w, h, rows

folder, channels = sys.argv[1], int(sys.argv[2])
names = sorted(os.listdir(folder))
want = sorted(f"{kind}_{e}.png" for kind in ("samples", "reconstructions") for e in (1, 2))
assert names == want, f"files {names}, expected {want}"
side = None
for name in names:
    w, h, rows = read_png(os.path.join(folder, name))
    side = side or w // 8
    expect = (8 * side, 8 * side) if name.startswith("samples") else (8 * side, 2 * side)
    assert (w, h) == expect, f"{name}: {w}×{h}, expected {expect[0]}×{expect[1]}"
    coloured = any(r[i] != r[i + 1] or r[i] != r[i + 2] for r in rows for i in range(0, len(r), 3))
    assert coloured == (channels == 3), f"{name}: {'colour' if coloured else 'grey'} for {channels}-channel data"
    print(f"ok   {name}: {w}×{h}, {'colour' if coloured else 'grey'}")
PY
