#!/usr/bin/python3
# vaelab-train on arrays written by NumPy itself (np.save, np.savez, np.savez_compressed): each
# trains one epoch of a tiny model and reports a finite test ELBO, with the split it made.
# Not a test of the readers' corner cases (tests/test_numpy_data.cpp writes those bytes by hand).
# usage: test_numpy_files.py VAELAB_TRAIN
import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

TRAIN = sys.argv[1] if len(sys.argv) > 1 else "build/vaelab-train"


def blobs(n, side=8, seed=0):
    """n grey images: a bright square at one of four corners (the label), on noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    x = rng.integers(0, 40, (n, side, side)).astype(np.uint8)
    half = side // 2
    for i, label in enumerate(labels):
        r, c = divmod(int(label), 2)
        x[i, r * half:(r + 1) * half, c * half:(c + 1) * half] = 220
    return x, labels


class NumpyFiles(unittest.TestCase):
    def train(self, path, *extra):
        run = subprocess.run([TRAIN, "--data", path, "--epochs", "1", "--hidden", "16", "--latent", "2", "--batch",
                              "10", "--threads", "1", "--json", *extra], capture_output=True, text=True, timeout=120)
        self.assertEqual(run.returncode, 0, run.stderr)
        epochs = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
        self.assertTrue(epochs, run.stdout)
        self.assertTrue(math.isfinite(epochs[-1]["test_elbo"]), epochs[-1])
        return run.stderr

    def test_npy_uint8_and_float32(self):
        x, _ = blobs(100)
        with tempfile.TemporaryDirectory() as tmp:
            for name, array in (("u8.npy", x), ("f32.npy", x.astype(np.float32) / 255)):
                path = os.path.join(tmp, name)
                np.save(path, array)
                err = self.train(path, "--test-fraction", "0.2")
                self.assertIn("its last 20 of 100 images are held out", err)
            np.save(os.path.join(tmp, "chw.npy"), x[:, None, :, :])  # N×1×H×W reads as grey too
            self.train(os.path.join(tmp, "chw.npy"))

    def test_keras_npz_stored_and_compressed(self):
        x, y = blobs(120, seed=1)
        with tempfile.TemporaryDirectory() as tmp:
            for save in (np.savez, np.savez_compressed):
                path = os.path.join(tmp, save.__name__ + ".npz")
                save(path, x_train=x[:100], y_train=y[:100].astype(np.int64), x_test=x[100:], y_test=y[100:])
                err = self.train(path)
                self.assertNotIn("held out", err)
            path = os.path.join(tmp, "unlabelled.npz")
            np.savez(path, x_train=x[:100], x_test=x[100:])
            self.train(path, "--max-images", "60")

    def test_refusals_name_the_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "doubles.npy")
            np.save(path, np.zeros((4, 8, 8)))
            run = subprocess.run([TRAIN, "--data", path, "--epochs", "0"], capture_output=True, text=True, timeout=60)
            self.assertEqual(run.returncode, 1)
            self.assertIn(path, run.stderr)
            self.assertIn("dtype '<f8' are not supported", run.stderr)
            path = os.path.join(tmp, "fortran.npy")
            np.save(path, np.asfortranarray(np.zeros((4, 8, 8), np.uint8)))
            run = subprocess.run([TRAIN, "--data", path, "--epochs", "0"], capture_output=True, text=True, timeout=60)
            self.assertEqual(run.returncode, 1)
            self.assertIn("Fortran order", run.stderr)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
