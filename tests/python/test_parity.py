#!/usr/bin/python3
# Parity of python/vaelab_torch with vaelab: per family a briefly trained PyTorch model is written,
# vaelab-train evaluates it, and the test ELBOs agree within Monte-Carlo noise. Not a test of
# training quality. Usage: test_parity.py VAELAB_TRAIN [DATA_FOLDER]
import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))

import torch  # noqa: E402

import vaelab_torch as vt  # noqa: E402
from vaelab_torch.data import as_float  # noqa: E402
from vaelab_torch.objective import training_loss  # noqa: E402

VAELAB_TRAIN = None
DATA = "/usr/share/datasets/fashion-mnist"
EVAL_IMAGES = 2000  # vaelab's one-sample ELBO over these has a standard error of about 0.1 nats
PY_SAMPLES = 10     # samples of z per image for PyTorch's estimate
TRAIN_STEPS = 100

FAMILIES = {
    # One hidden layer: PyTorch examples/vae's names (fc1, fc21, fc22, fc3, fc4).
    "mlp_examples_names": vt.ModelConfig(latent=8, hidden=[256]),
    # Several hidden layers (encoder.{i} / decoder.{i}) and a learned decoder variance.
    "mlp_deep_gaussian_learned": vt.ModelConfig(latent=6, hidden=[256, 64], likelihood="gaussian-learned"),
    "conv": vt.ModelConfig(latent=8, family="conv"),
    # The clustering VAE's KL is Monte-Carlo too (through p(y|z)); fixed-σ Gaussian likelihood.
    "gmvae_gaussian": vt.ModelConfig(latent=4, hidden=[200], family="gmvae", clusters=6, likelihood="gaussian",
                                     gaussian_sigma=0.25),
}


def vaelab_evaluate(weights):
    out = subprocess.run([VAELAB_TRAIN, "--import-safetensors", weights, "--epochs", "0", "--json", "--data", DATA,
                          "--eval-limit", str(EVAL_IMAGES), "--threads", "1"],
                         capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise AssertionError(f"vaelab-train failed ({out.returncode}): {out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


class Parity(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        data = vt.load_dataset(DATA)
        cls.train_x = as_float(data.train[:4000])
        cls.test_x = as_float(data.test[:EVAL_IMAGES])

    def trained(self, cfg):
        """A model a little way into training, so that q(z|x) depends on x and the KL is far from 0."""
        torch.manual_seed(3)
        model = vt.build_model(cfg)
        opt = torch.optim.Adam(model.parameters(), lr=2e-3)
        g = torch.Generator().manual_seed(4)
        for _ in range(TRAIN_STEPS):
            idx = torch.randint(self.train_x.shape[0], (64,), generator=g)
            terms = model(self.train_x[idx], torch.randn(64, 1, cfg.latent, generator=g))
            loss = training_loss(terms, 1.0, 1.0 / 64)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return model

    def check_family(self, name, cfg):
        model = self.trained(cfg)
        with tempfile.TemporaryDirectory() as tmp:
            weights = os.path.join(tmp, "weights.safetensors")
            vt.model_to_safetensors(model, weights)
            theirs = vaelab_evaluate(weights)
            # The file read back gives the same model (names, shapes and bytes).
            again = vt.model_from_safetensors(weights)
            for (k, a), b in zip(model.state_dict().items(), again.state_dict().values()):
                self.assertTrue(torch.equal(a, b), f"{name}: tensor {k} changed in the round trip")
        ours = vt.evaluate(model, self.test_x, samples=PY_SAMPLES, generator=torch.Generator().manual_seed(5))
        # vaelab's mean of one-sample estimates over EVAL_IMAGES images, ours of PY_SAMPLES each, on
        # the same images: only the within-image noise differs. 5 standard errors, plus the 6
        # significant digits vaelab-train prints.
        noise = math.sqrt(ours.sample_variance / EVAL_IMAGES * (1 + 1 / PY_SAMPLES))
        digits = 1e-5 * abs(ours.elbo)
        print(f"{name}: PyTorch ELBO {ours.elbo:.3f} (recon {ours.recon:.3f}, KL {ours.kl:.4f}), "
              f"vaelab {theirs['test_elbo']:.3f} (recon {theirs['test_recon']:.3f}, KL {theirs['test_kl']:.4f}), "
              f"noise σ {noise:.3f}")
        self.assertGreater(ours.kl, 1.0, f"{name}: the KL is too small for the comparison to say much")
        self.assertLess(abs(theirs["test_elbo"] - ours.elbo), 5 * noise + digits, f"{name}: test ELBOs differ")
        if cfg.family != "gmvae":  # analytic KL: the same numbers up to float rounding
            self.assertLess(abs(theirs["test_kl"] - ours.kl), 1e-4 * ours.kl + 1e-3, f"{name}: KLs differ")

    def test_mlp_examples_names(self):
        self.check_family("mlp_examples_names", FAMILIES["mlp_examples_names"])

    def test_mlp_deep_gaussian_learned(self):
        self.check_family("mlp_deep_gaussian_learned", FAMILIES["mlp_deep_gaussian_learned"])

    def test_conv(self):
        self.check_family("conv", FAMILIES["conv"])

    def test_gmvae_gaussian(self):
        self.check_family("gmvae_gaussian", FAMILIES["gmvae_gaussian"])


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: test_parity.py VAELAB_TRAIN [DATA_FOLDER]")
    VAELAB_TRAIN = sys.argv[1]
    if len(sys.argv) > 2:
        DATA = sys.argv[2]
    torch.set_num_threads(1)
    unittest.main(argv=sys.argv[:1], verbosity=2)
