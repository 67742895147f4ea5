#!/usr/bin/env python3
"""Writes a tiny IDX data set for the CLI tests: 40 training and 10 test images of SIDE×SIDE
pixels in fixed patterns (no randomness), with labels. Not a real data set.
usage: make_idx.py FOLDER SIDE"""
import os
import struct
import sys

folder, side = sys.argv[1], int(sys.argv[2])
os.makedirs(folder, exist_ok=True)
for name, n in (("train", 40), ("t10k", 10)):
    px = bytes((i * 37 + j * 11) % 256 for i in range(n) for j in range(side * side))
    with open(os.path.join(folder, f"{name}-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">BBBBIII", 0, 0, 8, 3, n, side, side) + px)
    with open(os.path.join(folder, f"{name}-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">BBBBI", 0, 0, 8, 1, n) + bytes(i % 10 for i in range(n)))
