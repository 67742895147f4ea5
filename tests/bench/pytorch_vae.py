#!/usr/bin/python3
# PyTorch reference peer for vaelab: the network of PyTorch's examples/vae (784-400-20, ReLU,
# Bernoulli decoder, loss = BCE(sum) + KLD(sum), Adam 1e-3, batch 128, reshuffled every epoch),
# generalised with flags that mirror vaelab-train's so both can be run with the same settings.
#
#   pytorch_vae.py --data DIR [--model mlp|conv] [--latent 20] [--hidden 400[,H..]] [--batch 128] [--epochs 10]
#                  [--lr 1e-3] [--seed 1] [--threads T] [--samples L] [--iwae K] [--json]
#                  [--save-safetensors FILE] [--load-safetensors FILE]
#   pytorch_vae.py --throughput [--bench-steps N | --bench-seconds S] [--warmup W] ...
#
# Training mode prints one line per epoch (JSON with --json): epoch, step, train_elbo,
# test_elbo, test_recon, test_kl, [test_iwae], samples_per_s. ELBOs are nats per example and
# negative (-(loss / N)); the test set (10k images) is evaluated with one sample of z each.
# Throughput mode times only training steps and prints a single JSON line.
# --model conv is vaelab's convolutional VAE (Conv 32/64 stride 2 -> fc21/fc22; dec_fc -> three
# ConvTranspose2d), with the same module names and shapes as vaelab's safetensors export.
# Inputs are pixel/255 floats in [0, 1] (no binarisation), read straight from the IDX .gz files,
# or from one .npy of uint8 images (N×H×W, N×H×W×C or N×C×H×W, C in {1, 3}: colour for the conv
# VAE's throughput on colour; the last tenth is the test set).
import argparse
import gzip
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"


# ----------------------------------------------------------------------------- data

def read_idx_images(path):
    """Reads an IDX3 (optionally gzip'd) image file into a float32 [N, rows*cols] array / 255."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != 0x00000803:
        raise ValueError(f"{path}: not an IDX3 ubyte image file (magic {magic:#x})")
    pixels = np.frombuffer(raw, dtype=np.uint8, count=n * rows * cols, offset=16)
    return pixels.reshape(n, rows * cols).astype(np.float32) / 255.0, rows, cols


def find_split(data_dir, prefix):
    for name in (f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-images-idx3-ubyte",
                 f"{prefix}-images.idx3-ubyte"):
        p = os.path.join(data_dir, name)
        if os.path.exists(p):
            return p
    raise FileNotFoundError(f"no {prefix}-images-idx3-ubyte[.gz] in {data_dir}")


def read_npy_images(path):
    """A .npy of uint8 images as float32 [N, C*H*W] / 255 in C×H×W order, with C, H, W. A last axis
    of 1 or 3 is read as channels (N×H×W×C), else a second axis of 1 or 3 (N×C×H×W), else N×H×W."""
    a = np.load(path)
    if a.dtype != np.uint8:
        raise ValueError(f"{path}: expected uint8 pixels, got {a.dtype}")
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4 and a.shape[3] in (1, 3):
        a = a.transpose(0, 3, 1, 2)
    elif not (a.ndim == 4 and a.shape[1] in (1, 3)):
        raise ValueError(f"{path}: expected N×H×W, N×H×W×C or N×C×H×W with C 1 or 3, got {a.shape}")
    n, c, h, w = a.shape
    return np.ascontiguousarray(a).reshape(n, c * h * w).astype(np.float32) / 255.0, c, h, w


def load_dataset(data_dir):
    """(train, test, channels, rows, cols) from an IDX folder or one .npy (its last tenth: test)."""
    if data_dir.endswith(".npy"):
        x, c, rows, cols = read_npy_images(data_dir)
        split = len(x) - max(1, len(x) // 10)
        return torch.from_numpy(x[:split]), torch.from_numpy(x[split:]), c, rows, cols
    train, rows, cols = read_idx_images(find_split(data_dir, "train"))
    test, trows, tcols = read_idx_images(find_split(data_dir, "t10k"))
    if (rows, cols) != (trows, tcols):
        raise ValueError("train and test image sizes differ")
    return torch.from_numpy(train), torch.from_numpy(test), 1, rows, cols


# ----------------------------------------------------------------------------- model

class VAE(nn.Module):
    """examples/vae's VAE; with one hidden layer the modules are fc1, fc21, fc22, fc3, fc4.
    With several hidden widths the encoder is encoder.{i}, the heads fc21/fc22 and the decoder
    (mirrored widths, then the output layer) decoder.{i} -- the names vaelab's safetensors uses."""

    def __init__(self, input_dim=784, hidden=(400,), latent=20):
        super().__init__()
        self.hidden = list(hidden)
        self.single = len(self.hidden) == 1
        if self.single:
            h = self.hidden[0]
            self.fc1 = nn.Linear(input_dim, h)
            self.fc21 = nn.Linear(h, latent)
            self.fc22 = nn.Linear(h, latent)
            self.fc3 = nn.Linear(latent, h)
            self.fc4 = nn.Linear(h, input_dim)
        else:
            enc_dims = [input_dim] + self.hidden
            self.encoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(enc_dims[:-1], enc_dims[1:]))
            self.fc21 = nn.Linear(self.hidden[-1], latent)
            self.fc22 = nn.Linear(self.hidden[-1], latent)
            dec_dims = [latent] + self.hidden[::-1] + [input_dim]
            self.decoder = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dec_dims[:-1], dec_dims[1:]))

    def encode(self, x):
        if self.single:
            h = F.relu(self.fc1(x))
        else:
            h = x
            for layer in self.encoder:
                h = F.relu(layer(h))
        return self.fc21(h), self.fc22(h)

    def decode_logits(self, z):
        # The example applies a sigmoid here and BCE on probabilities; we keep the logits and
        # use BCE-with-logits, the same function computed without the log(0) clamp.
        if self.single:
            return self.fc4(F.relu(self.fc3(z)))
        h = z
        for layer in self.decoder[:-1]:
            h = F.relu(layer(h))
        return self.decoder[-1](h)

    @staticmethod
    def reparameterize(mu, logvar, generator=None):
        std = torch.exp(0.5 * logvar)
        eps = torch.randn(std.shape, generator=generator) if generator is not None else torch.randn_like(std)
        return mu + eps * std


class ConvVAE(nn.Module):
    """vaelab's ModelFamily::Conv on C channels: Conv2d(C,32,3,s2,p1) ReLU Conv2d(32,64,3,s2,p1) ReLU -> fc21/fc22;
    dec_fc (latent -> 32*h2*w2) ReLU ConvTranspose2d(32,64,3,s2,p1) ReLU ConvTranspose2d(64,32,3,s2,p1)
    ReLU ConvTranspose2d(32,C,3,s1,p1). Stride-2 layers give ceil(n/2); output_padding per axis is 1
    where the encoder-side size was even, so any H x W comes back to itself (28 -> 14 -> 7 -> 14 -> 28)."""

    def __init__(self, rows=28, cols=28, latent=2, channels=1):
        super().__init__()
        half = lambda n: (n + 1) // 2
        op = lambda n: 1 if n % 2 == 0 else 0
        self.channels, self.rows, self.cols = channels, rows, cols
        h1, w1 = half(rows), half(cols)
        self.h2, self.w2 = half(h1), half(w1)
        self.enc_conv1 = nn.Conv2d(channels, 32, 3, stride=2, padding=1)
        self.enc_conv2 = nn.Conv2d(32, 64, 3, stride=2, padding=1)
        self.fc21 = nn.Linear(64 * self.h2 * self.w2, latent)
        self.fc22 = nn.Linear(64 * self.h2 * self.w2, latent)
        self.dec_fc = nn.Linear(latent, 32 * self.h2 * self.w2)
        self.dec_deconv1 = nn.ConvTranspose2d(32, 64, 3, stride=2, padding=1, output_padding=(op(h1), op(w1)))
        self.dec_deconv2 = nn.ConvTranspose2d(64, 32, 3, stride=2, padding=1, output_padding=(op(rows), op(cols)))
        self.dec_deconv3 = nn.ConvTranspose2d(32, channels, 3, stride=1, padding=1)

    def encode(self, x):
        h = x.reshape(-1, self.channels, self.rows, self.cols)
        h = F.relu(self.enc_conv2(F.relu(self.enc_conv1(h)))).flatten(1)
        return self.fc21(h), self.fc22(h)

    def decode_logits(self, z):
        h = F.relu(self.dec_fc(z)).reshape(-1, 32, self.h2, self.w2)
        h = F.relu(self.dec_deconv2(F.relu(self.dec_deconv1(h))))
        return self.dec_deconv3(h).flatten(1)

    reparameterize = staticmethod(VAE.reparameterize)


def elbo_terms(model, x, samples=1, generator=None):
    """Sums over the batch: (recon = sum log p(x|z) averaged over L samples, kl = sum KL(q||p))."""
    mu, logvar = model.encode(x)
    if samples == 1:
        logits = model.decode_logits(model.reparameterize(mu, logvar, generator))
        recon = -F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
    else:
        mu_l = mu.repeat(samples, 1)
        lv_l = logvar.repeat(samples, 1)
        logits = model.decode_logits(model.reparameterize(mu_l, lv_l, generator))
        recon = -F.binary_cross_entropy_with_logits(logits, x.repeat(samples, 1), reduction="sum") / samples
    kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    return recon, kl


def iwae_bound_sum(model, x, k, generator, chunk=100):
    """Sum over x of log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x)."""
    total = 0.0
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    for i in range(0, x.shape[0], chunk):
        xb = x[i:i + chunk]
        mu, logvar = model.encode(xb)
        std = torch.exp(0.5 * logvar)
        eps = torch.randn((k,) + mu.shape, generator=generator)
        z = mu + eps * std                                   # [K, B, D]
        logits = model.decode_logits(z.reshape(-1, z.shape[-1])).reshape(k, xb.shape[0], -1)
        log_px = -F.binary_cross_entropy_with_logits(logits, xb.expand(k, -1, -1), reduction="none").sum(-1)
        log_pz = (-0.5 * z.pow(2) - half_log_2pi).sum(-1)
        log_qz = (-0.5 * eps.pow(2) - half_log_2pi - 0.5 * logvar).sum(-1)
        w = log_px + log_pz - log_qz                         # [K, B]
        total += (torch.logsumexp(w, dim=0) - math.log(k)).sum().item()
    return total


# ----------------------------------------------------------------------------- safetensors

def save_safetensors(model, path, metadata):
    tensors = {name: t.detach().contiguous().to(torch.float32) for name, t in model.state_dict().items()}
    try:
        from safetensors.torch import save_file
        save_file(tensors, path, metadata=metadata)
        return
    except ImportError:
        pass
    # Hand-written writer: u64 LE header length, JSON header, raw little-endian F32 data.
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, t in tensors.items():
        data = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    head += b" " * (-len(head) % 8)  # pad so the data starts 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


_ST_DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2"}


def load_safetensors(path):
    """Reads a safetensors file into {name: float32 tensor} and its metadata (F32/F64/F16/BF16)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {}) or {}
    base = 8 + n
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        buf = raw[base + begin:base + end]
        if info["dtype"] == "BF16":
            arr = (np.frombuffer(buf, "<u2").astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] in _ST_DTYPES:
            arr = np.frombuffer(buf, _ST_DTYPES[info["dtype"]]).astype(np.float32)
        else:
            raise ValueError(f"{path}: {name}: unsupported dtype {info['dtype']}")
        out[name] = torch.from_numpy(arr.reshape(info["shape"]).copy())
    return out, meta


# ----------------------------------------------------------------------------- runs

def runtime_info():
    info = {"torch": torch.__version__, "threads": torch.get_num_threads()}
    try:
        import ctypes
        lib = ctypes.CDLL("libopenblas.so.0")
        lib.openblas_get_config.restype = ctypes.c_char_p
        lib.openblas_get_corename.restype = ctypes.c_char_p
        info["blas"] = lib.openblas_get_config().decode()
        info["blas_core"] = lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        info["blas"] = "unknown (" + ("MKL" if torch.backends.mkl.is_available() else "no OpenBLAS found") + ")"
    return info


def evaluate(model, test, samples, iwae_k, generator, chunk=1000):
    model.eval()
    recon = kl = 0.0
    with torch.no_grad():
        for i in range(0, test.shape[0], chunk):
            r, k = elbo_terms(model, test[i:i + chunk], samples, generator)
            recon += r.item()
            kl += k.item()
        iwae = iwae_bound_sum(model, test, iwae_k, generator) / test.shape[0] if iwae_k > 0 else None
    model.train()
    n = test.shape[0]
    return recon / n, kl / n, iwae


def train(args, model, train_x, test_x):
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    shuffle_gen = torch.Generator().manual_seed(args.seed)
    n = train_x.shape[0]
    step = 0
    if args.epochs == 0:  # evaluate only (e.g. weights from --load-safetensors)
        eval_gen = torch.Generator().manual_seed(args.seed * 1000003)
        t_recon, t_kl, t_iwae = evaluate(model, test_x, 1, args.iwae, eval_gen)
        rec = {"epoch": 0, "step": 0, "test_elbo": t_recon - t_kl, "test_recon": t_recon, "test_kl": t_kl}
        if t_iwae is not None:
            rec["test_iwae"] = t_iwae
        if args.json:
            print(json.dumps(rec), flush=True)
        else:
            extra = f"  iwae {t_iwae:.3f}" if t_iwae is not None else ""
            print(f"evaluation: test {rec['test_elbo']:.3f}  (recon {t_recon:.3f}  kl {t_kl:.3f}){extra}", flush=True)
    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(n, generator=shuffle_gen)
        loss_sum = 0.0
        t0 = time.perf_counter()
        for i in range(0, n, args.batch):
            x = train_x[perm[i:i + args.batch]]
            opt.zero_grad()
            recon, kl = elbo_terms(model, x, args.samples)
            loss = kl - recon  # = BCE(sum) + KLD(sum), as in the example
            loss.backward()
            opt.step()
            loss_sum += loss.item()
            step += 1
        train_time = time.perf_counter() - t0
        # A separate generator for evaluation noise keeps the training stream independent of it.
        eval_gen = torch.Generator().manual_seed(args.seed * 1000003 + epoch)
        t_recon, t_kl, t_iwae = evaluate(model, test_x, 1, args.iwae, eval_gen)
        rec = {"epoch": epoch, "step": step, "train_elbo": -loss_sum / n,
               "test_elbo": t_recon - t_kl, "test_recon": t_recon, "test_kl": t_kl}
        if t_iwae is not None:
            rec["test_iwae"] = t_iwae
        rec["samples_per_s"] = n / train_time
        if args.json:
            print(json.dumps(rec), flush=True)
        else:
            extra = f"  iwae {t_iwae:.3f}" if t_iwae is not None else ""
            print(f"epoch {epoch:3d}  step {step:6d}  train {rec['train_elbo']:.3f}  test {rec['test_elbo']:.3f}"
                  f"  (recon {t_recon:.3f}  kl {t_kl:.3f}){extra}  {rec['samples_per_s']:.0f} samples/s",
                  flush=True)


def throughput(args, model, train_x):
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator().manual_seed(args.seed)
    n = train_x.shape[0]

    def one_step():
        idx = torch.randint(0, n, (args.batch,), generator=gen)
        x = train_x[idx]
        opt.zero_grad()
        recon, kl = elbo_terms(model, x, args.samples)
        (kl - recon).backward()
        opt.step()

    for _ in range(args.warmup):
        one_step()
    steps = 0
    t0 = time.perf_counter()
    c0 = time.process_time()  # CPU time of all threads: a rate per CPU-second survives a busy machine
    if args.bench_steps > 0:
        for _ in range(args.bench_steps):
            one_step()
        steps = args.bench_steps
    else:
        while True:
            one_step()
            steps += 1
            if time.perf_counter() - t0 >= args.bench_seconds:
                break
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    rec = {"mode": "throughput", "impl": "pytorch", "model": args.model, "hidden": args.hidden_list, "latent": args.latent,
           "batch": args.batch, "samples": args.samples, "steps": steps, "seconds": elapsed,
           "samples_per_s": steps * args.batch / elapsed, "cpu_seconds": cpu}
    rec.update(runtime_info())
    print(json.dumps(rec), flush=True)


def parse_args(argv):
    p = argparse.ArgumentParser(description="PyTorch examples/vae reference for vaelab")
    p.add_argument("--data", default=DEFAULT_DATA, help="directory with the IDX files (.gz or plain), or one .npy of uint8 images")
    p.add_argument("--model", default="mlp", choices=["mlp", "conv"], help="conv: vaelab's convolutional VAE (--hidden ignored)")
    p.add_argument("--latent", type=int, default=20)
    p.add_argument("--hidden", default="400", help="comma-separated encoder widths; decoder mirrors")
    p.add_argument("--likelihood", default="bernoulli", choices=["bernoulli"],
                   help="accepted for symmetry with vaelab-train; only bernoulli is implemented")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave torch's default)")
    p.add_argument("--samples", type=int, default=1, help="L samples of z per example in the training loss")
    p.add_argument("--iwae", type=int, default=0, help="K for the IWAE bound on the test set (0: skip)")
    p.add_argument("--json", action="store_true", help="one JSON object per epoch on stdout")
    p.add_argument("--save-safetensors", metavar="FILE", help="write the weights at the end")
    p.add_argument("--load-safetensors", metavar="FILE",
                   help="start from these weights (vaelab's names); with --epochs 0 only evaluate")
    p.add_argument("--throughput", action="store_true", help="time training steps only, print one JSON line")
    p.add_argument("--bench-steps", type=int, default=0, help="throughput: fixed number of timed steps")
    p.add_argument("--bench-seconds", type=float, default=3.0, help="throughput: time budget when no --bench-steps")
    p.add_argument("--warmup", type=int, default=5, help="throughput: untimed warm-up steps")
    a = p.parse_args(argv)
    try:
        a.hidden_list = [int(h) for h in a.hidden.split(",") if h.strip()]
    except ValueError:
        p.error(f"--hidden: expected comma-separated integers, got {a.hidden!r}")
    if not a.hidden_list or min(a.hidden_list) < 1:
        p.error("--hidden: need at least one positive width")
    for name in ("latent", "batch", "samples"):
        if getattr(a, name) < 1:
            p.error(f"--{name} must be >= 1")
    if a.epochs < 0 or a.iwae < 0 or a.threads < 0:
        p.error("--epochs, --iwae and --threads must be >= 0")
    return a


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train_x, test_x, channels, rows, cols = load_dataset(args.data)
    if args.load_safetensors:
        weights, meta = load_safetensors(args.load_safetensors)
        if meta.get("likelihood", "bernoulli") != "bernoulli":
            sys.exit(f"pytorch_vae.py: {args.load_safetensors}: likelihood {meta['likelihood']!r} is not implemented")
        # Shapes decide the architecture, as vaelab's importer does.
        if "enc_conv1.weight" in weights or meta.get("family") == "conv":
            args.model = "conv"
        elif "fc1.weight" in weights:
            args.hidden_list = [weights["fc1.weight"].shape[0]]
        else:
            i, args.hidden_list = 0, []
            while f"encoder.{i}.weight" in weights:
                args.hidden_list.append(weights[f"encoder.{i}.weight"].shape[0])
                i += 1
        args.latent = weights["fc21.weight"].shape[0]
    if args.model == "conv":
        model = ConvVAE(rows, cols, args.latent, channels)
    else:
        model = VAE(channels * rows * cols, args.hidden_list, args.latent)
    if args.load_safetensors:
        model.load_state_dict(weights)  # strict: names and shapes must match
    print("# " + json.dumps(runtime_info()), file=sys.stderr)
    if args.throughput:
        throughput(args, model, train_x)
    else:
        train(args, model, train_x, test_x)
    if args.save_safetensors:
        save_safetensors(model, args.save_safetensors, {
            **({"image_c": str(channels)} if channels != 1 else {}), "image_h": str(rows), "image_w": str(cols), "latent": str(args.latent),
            "hidden": ",".join(map(str, args.hidden_list)), "likelihood": "bernoulli",
            **({"family": "conv"} if args.model == "conv" else {}),
            "source": "tests/bench/pytorch_vae.py"})


if __name__ == "__main__":
    main()
