#!/usr/bin/env python3
"""Writes a tiny colour data set for the CLI tests with NumPy: one .npy of 100 RGB images, 8×8,
uint8, shaped N×H×W×C: a red, gold or blue square on white in turn, at fixed places (no randomness).
Not a real data set. Exits 77 (skipped) when this python has no numpy.
usage: make_colour_npy.py FILE.npy"""
import sys

try:
    import numpy as np
except ImportError:
    print("SKIP: this python3 has no numpy (package python3-numpy)")
    sys.exit(77)

colours = np.array([(220, 20, 30), (255, 215, 0), (30, 40, 230)], dtype=np.uint8)
images = np.full((100, 8, 8, 3), 255, dtype=np.uint8)
for i in range(100):
    y, x = i % 4, (i // 4) % 4
    images[i, y:y + 4, x:x + 4] = colours[i % 3]
np.save(sys.argv[1], images)
