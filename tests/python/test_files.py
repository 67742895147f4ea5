#!/usr/bin/python3
# The file side of python/vaelab_torch: .npz data read like the IDX it came from, safetensors bytes
# as the format lays them out, atomic writes, the run writer's metrics on resume. No training.
import json
import os
import struct
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))

import numpy as np  # noqa: E402  (only to write test .npz files, as users' tools would)
import torch  # noqa: E402

import vaelab_torch as vt  # noqa: E402
from vaelab_torch.safetensors_io import decode_safetensors, encode_safetensors  # noqa: E402

DATA = "/usr/share/datasets/fashion-mnist"


class DataSources(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.idx = vt.load_dataset(DATA)

    def write_npz(self, folder, **arrays):
        path = os.path.join(folder, "set.npz")
        np.savez(path, **arrays)
        return path

    def test_npz_bytes_like_idx(self):
        train, test = self.idx.train[:300].numpy(), self.idx.test[:100].numpy()
        with tempfile.TemporaryDirectory() as tmp:
            ds = vt.load_dataset(self.write_npz(tmp, x_train=train, x_test=test,
                                                y_train=self.idx.train_labels[:300].numpy()))
        self.assertEqual(ds.train.dtype, torch.uint8)
        self.assertTrue(torch.equal(ds.train, self.idx.train[:300]))
        self.assertTrue(torch.equal(ds.test, self.idx.test[:100]))
        self.assertTrue(torch.equal(ds.train_labels, self.idx.train_labels[:300]))
        self.assertIsNone(ds.test_labels)
        self.assertEqual(ds.image_size, (28, 28))

    def test_npz_layouts_and_floats(self):
        train = self.idx.train[:50].numpy()
        with tempfile.TemporaryDirectory() as tmp:
            # Channels last, Fortran order, float pixels in [0, 1].
            floats = np.asfortranarray((train / 255.0).astype(np.float32)[..., None])
            ds = vt.load_dataset(self.write_npz(tmp, x_train=floats, x_test=floats[:10]))
        self.assertEqual(tuple(ds.train.shape), (50, 28, 28))
        expect = vt.data.as_float(self.idx.train[:50])
        self.assertTrue(torch.allclose(vt.data.as_float(ds.train), expect, atol=1e-7))

    def test_npz_refusals(self):
        with tempfile.TemporaryDirectory() as tmp:
            with self.assertRaisesRegex(KeyError, "x_test"):
                vt.load_dataset(self.write_npz(tmp, x_train=self.idx.train[:5].numpy()))
            bad = np.full((5, 4, 4), 2.0, dtype=np.float32)
            with self.assertRaisesRegex(ValueError, r"\[0, 1\]"):
                vt.load_dataset(self.write_npz(tmp, x_train=bad, x_test=bad))

    def test_idx_scaling_is_vaelabs(self):
        # byte / 255 in float32, as core/data.cpp's gather_batch.
        x = vt.data.as_float(torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16))
        want = torch.tensor([np.float32(v) / np.float32(255) for v in range(256)], dtype=torch.float32)
        self.assertTrue(torch.equal(x[0], want))


class Safetensors(unittest.TestCase):
    def test_layout(self):
        tensors = {"b": torch.arange(6, dtype=torch.float32).reshape(2, 3), "a": torch.tensor([1.5])}
        raw = encode_safetensors(tensors, {"format": "vaelab-vae"})
        (n,) = struct.unpack("<Q", raw[:8])
        self.assertEqual((8 + n) % 8, 0, "tensor data must start 8-byte aligned")
        header = json.loads(raw[8:8 + n])
        self.assertEqual(header["__metadata__"], {"format": "vaelab-vae"})
        self.assertEqual(header["b"], {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]})
        self.assertEqual(header["a"], {"dtype": "F32", "shape": [1], "data_offsets": [24, 28]})
        self.assertEqual(raw[8 + n:], struct.pack("<7f", 0, 1, 2, 3, 4, 5, 1.5))
        back, meta = decode_safetensors(raw)
        self.assertEqual(list(back), ["b", "a"])
        self.assertTrue(torch.equal(back["b"], tensors["b"]))

    def test_reads_half_precision(self):
        # A hand-made BF16 tensor: the top halves of 1.0 and −2.0.
        header = json.dumps({"w": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}}).encode()
        header += b" " * ((8 - len(header) % 8) % 8)
        raw = struct.pack("<Q", len(header)) + header + struct.pack("<2H", 0x3F80, 0xC000)
        back, _ = decode_safetensors(raw)
        self.assertTrue(torch.equal(back["w"], torch.tensor([1.0, -2.0])))

    def test_atomic_write_leaves_no_temporary(self):
        with tempfile.TemporaryDirectory() as tmp:
            model = vt.build_model(vt.ModelConfig(latent=2, hidden=[8], image_h=4, image_w=5))
            path = os.path.join(tmp, "w.safetensors")
            vt.model_to_safetensors(model, path)
            vt.model_to_safetensors(model, path)
            self.assertEqual(os.listdir(tmp), ["w.safetensors"])
            again = vt.model_from_safetensors(path)
            self.assertEqual((again.config.image_h, again.config.image_w, again.config.hidden), (4, 5, [8]))


class RunWriterResume(unittest.TestCase):
    def test_resume_drops_later_lines_and_finished(self):
        model = vt.build_model(vt.ModelConfig(latent=2, hidden=[8], image_h=4, image_w=4))
        with tempfile.TemporaryDirectory() as tmp:
            w = vt.RunWriter(tmp, write_every=2)
            for step in range(1, 6):
                w.log(step, step / 5, train_elbo=-float(step), kl=float("nan"))
                if w.due(step):
                    w.write_weights(model, step, 0)
            w.finish(model, 5, 1)
            w.close()
            with open(os.path.join(tmp, "metrics.jsonl")) as f:
                lines = [json.loads(x) for x in f]
            self.assertEqual([r["step"] for r in lines], [1, 2, 3, 4, 5, 5])
            self.assertIsNone(lines[0]["kl"], "NaN must be written as null")
            self.assertTrue(lines[-1]["finished"])
            _, meta = vt.read_safetensors(os.path.join(tmp, "weights.safetensors"))
            self.assertEqual(meta["step"], "5")
            with open(os.path.join(tmp, "metrics.jsonl"), "a") as f:
                f.write('{"step": 6, "cut sh')  # a line cut short by a crash
            w = vt.RunWriter(tmp, write_every=2, resume_step=4)
            w.close()
            with open(os.path.join(tmp, "metrics.jsonl")) as f:
                self.assertEqual([json.loads(x)["step"] for x in f], [1, 2, 3, 4])


if __name__ == "__main__":
    if len(sys.argv) > 1:
        DATA = sys.argv[1]
    unittest.main(argv=sys.argv[:1], verbosity=2)
