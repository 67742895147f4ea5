#!/usr/bin/python3
# Trains a vaelab model family with PyTorch (one process, or DistributedDataParallel under torchrun)
# into a run folder vaelab follows; only rank 0 writes. Not vaelab-train: same model, loss and
# flags, PyTorch's numbers.
"""Train a vaelab model with PyTorch (one process, or DistributedDataParallel under torchrun).

One process:
  /usr/bin/python3 python/train_ddp.py --run runs/a --model mlp --latent 20 --epochs 10

Two processes on one machine (gloo on CPU, nccl where there are GPUs):
  /usr/bin/torchrun --standalone --nproc_per_node 2 --redirects 2 --tee 2 \\
      python/train_ddp.py --run runs/a --epochs 10

Across machines, as torchrun does it (the same command on every machine, same --data present):
  /usr/bin/torchrun --nnodes 2 --nproc_per_node 4 --rdzv_backend c10d \\
      --rdzv_endpoint HOST:29400 --rdzv_id run1 --redirects 2 --tee 2 python/train_ddp.py --run runs/a

Debian's torchrun (torch 1.13 on Python 3.11) dies at start with
"'NoneType' object has no attribute 'get'" unless --redirects and --tee are non-zero
(e.g. --redirects 2 --tee 2): Python 3.11 no longer iterates an IntFlag's zero member.

--batch is the global batch: each step takes --batch examples, split over the processes, so a run
sees the same batches (and the same noise) whatever the number of processes. Starting again with
the same --run continues a stopped run where it stopped (the model and --batch/--seed/--data must
be the same; --epochs may grow). ELBOs are in nats per example (negative; higher is better).
"""
import argparse
import io
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # importable without installing

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch.nn.parallel import DistributedDataParallel  # noqa: E402

import vaelab_torch as vt  # noqa: E402
from vaelab_torch.clusters import fit_clusters_to_codes  # noqa: E402
from vaelab_torch.data import as_float  # noqa: E402
from vaelab_torch.files import write_file_atomically  # noqa: E402
from vaelab_torch.objective import training_loss  # noqa: E402

RESUME_STATE = "resume.pt"
# Settings that fix which examples and noise each step sees; a resumed run must keep them.
FIXED_ON_RESUME = ("data", "batch", "seed", "train_limit", "binarize")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, metavar="DIR", help="run folder to write (and resume from)")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist", metavar="PATH",
                   help="folder with {train,t10k}-images-idx3-ubyte[.gz] (+ labels), or an .npz file with "
                        "x_train, x_test (+ y_train, y_test) (default: %(default)s)")
    p.add_argument("--model", default="mlp", choices=vt.FAMILIES, help="model family (default mlp)")
    p.add_argument("--clusters", type=int, default=10, metavar="K", help="categories of the clustering VAE (default 10)")
    p.add_argument("--latent", type=int, default=20, metavar="D", help="latent dimensions (default 20)")
    p.add_argument("--hidden", default="400", metavar="H[,H...]", help="hidden widths, encoder order (default 400)")
    p.add_argument("--likelihood", default="bernoulli", choices=vt.LIKELIHOODS, help="(default bernoulli)")
    p.add_argument("--sigma", type=float, default=0.1, metavar="S", help="decoder σ for --likelihood gaussian (default 0.1)")
    p.add_argument("--batch", type=int, default=128, metavar="B", help="global batch size (default 128)")
    p.add_argument("--epochs", type=int, default=10, metavar="N", help="epochs to train; 0 = evaluate only (default 10)")
    p.add_argument("--lr", type=float, default=1e-3, metavar="LR", help="Adam learning rate (default 1e-3)")
    p.add_argument("--beta", type=float, default=1.0, metavar="B", help="weight of the KL term (default 1)")
    p.add_argument("--warmup", type=int, default=0, metavar="STEPS", help="linear KL warm-up over this many steps (default 0)")
    p.add_argument("--samples", type=int, default=1, metavar="L", help="Monte-Carlo samples of z per example (default 1)")
    p.add_argument("--seed", type=int, default=1, metavar="S", help="random seed (default 1)")
    p.add_argument("--binarize", default="none", choices=("none", "static", "dynamic"), help="(default none)")
    p.add_argument("--train-limit", type=int, default=0, metavar="N", help="train on the first N training images only")
    p.add_argument("--eval-limit", type=int, default=0, metavar="N", help="evaluate on the first N test images only")
    p.add_argument("--write-every", type=int, default=500, metavar="STEPS",
                   help="write the weights (and the resume state) every STEPS steps; 0 = only at the end (default 500)")
    p.add_argument("--log-every", type=int, default=10, metavar="STEPS",
                   help="one metrics.jsonl line per STEPS steps, besides the one per epoch (default 10)")
    p.add_argument("--max-steps", type=int, default=0, metavar="N",
                   help="stop after step N, resumable and not finished (a time-limited job); 0 = no limit")
    p.add_argument("--cluster-fit-step", type=int, default=500, metavar="STEP",
                   help="clustering VAE: refit the cluster Gaussians to k-means of the codes at this step; 0 = never")
    p.add_argument("--threads", type=int, default=0, metavar="T", help="torch threads per process (default: torch's choice)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="(default: cuda when available)")
    a = p.parse_args(argv)
    try:
        a.hidden = [int(h) for h in a.hidden.split(",")]
    except ValueError:
        p.error(f"--hidden: '{a.hidden}' is not a comma-separated list of widths")
    for name, lo in (("batch", 1), ("samples", 1), ("epochs", 0), ("warmup", 0), ("write_every", 0), ("log_every", 1)):
        if getattr(a, name) < lo:
            p.error(f"--{name.replace('_', '-')} must be at least {lo}")
    if not (a.lr > 0 and math.isfinite(a.lr)):
        p.error("--lr must be a positive number")
    return a


class Distributed:
    """Rank, world size and device of this process; a single process when not under torchrun."""

    def __init__(self, device_choice):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available() if device_choice == "auto" else device_choice == "cuda"
        if cuda:
            torch.cuda.set_device(local_rank)
            self.device = torch.device("cuda", local_rank)
        else:
            self.device = torch.device("cpu")
        self.enabled = self.world > 1
        if self.enabled:
            dist.init_process_group("nccl" if cuda else "gloo")

    @property
    def leader(self):
        return self.rank == 0

    def sum(self, values):
        """Sums a list of floats over all processes."""
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self.enabled:
            dist.all_reduce(t)
        return t.tolist()

    def share(self, obj):
        """Rank 0's obj, on every process."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def my_part(self, n):
        """This process's contiguous share [lo, hi) of n items."""
        lo = n * self.rank // self.world
        return lo, n * (self.rank + 1) // self.world

    def close(self):
        if self.enabled:
            dist.destroy_process_group()


# What a derived generator is for (its first key after the seed), so no two uses share numbers.
ORDER, EVAL_NOISE, STEP_NOISE, BINARIZE, CLUSTER_FIT = range(1, 6)


def derived_generator(*keys):
    """A torch generator seeded from the keys: the same numbers on every process and every run."""
    seed = 0x9E3779B97F4A7C15
    for k in keys:
        seed = (seed * 6364136223846793005 + int(k) + 1442695040888963407) % (1 << 63)
    return torch.Generator().manual_seed(seed)


def binarized(images, seed, which):
    """Each pixel 0 or 1, drawn once from Bernoulli(intensity)."""
    x = as_float(images)
    gen = derived_generator(seed, BINARIZE, which)
    return (torch.rand(x.shape, generator=gen) < x).to(torch.float32).reshape(images.shape)


class RunState:
    """Where the training is: what a resumed run needs besides the model and optimiser."""

    def __init__(self):
        self.step = 0            # optimiser steps taken
        self.epoch = 0           # epochs completed
        self.batch_in_epoch = 0  # batches of the current epoch taken
        self.examples = 0        # training examples seen


def settings_of(args, world):
    s = {k: getattr(args, k) for k in ("data", "model", "clusters", "latent", "hidden", "likelihood", "sigma", "batch",
                                        "epochs", "lr", "beta", "warmup", "samples", "seed", "binarize", "train_limit",
                                        "eval_limit", "write_every", "cluster_fit_step")}
    s["data"] = os.path.abspath(args.data)
    s["world_size"] = world
    return s


def load_resume_state(args):
    """The saved state of a stopped run in args.run, None for a new run, or {"error": why} when
    the folder holds a run these settings cannot continue."""
    path = os.path.join(args.run, RESUME_STATE)
    if not os.path.exists(path):
        return None
    saved = torch.load(path, map_location="cpu")
    now = settings_of(args, 0)
    old = saved["settings"]
    for k in FIXED_ON_RESUME + ("model", "clusters", "latent", "hidden", "likelihood", "sigma"):
        if old[k] != now[k]:
            return {"error": f"{args.run} holds a run with --{k.replace('_', '-')} {old[k]}, not {now[k]}; "
                             "use another --run folder, or the same settings to resume it"}
    return saved


def save_resume_state(args, model, optimizer, st, settings):
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": st.step, "epoch": st.epoch,
                "batch_in_epoch": st.batch_in_epoch, "examples": st.examples, "settings": settings}, buf)
    write_file_atomically(os.path.join(args.run, RESUME_STATE), buf.getvalue())


def evaluate_test(model, test_x, args, epoch, ddp):
    """The test ELBO (one sample of z per image, as vaelab-train) split over the processes; the
    noise is drawn for the whole set, so it does not depend on the number of processes."""
    n = test_x.shape[0]
    lo, hi = ddp.my_part(n)
    noise = torch.randn(n, 1, model.config.latent, generator=derived_generator(args.seed, EVAL_NOISE, epoch))
    ev = vt.evaluate(model, test_x[lo:hi], samples=1, noise=noise[lo:hi])
    count, recon, kl = ddp.sum([ev.count, ev.recon * ev.count, ev.kl * ev.count])
    return {"test_elbo": (recon - kl) / count, "test_recon": recon / count, "test_kl": kl / count}


def fit_clusters(model, optimizer, train_x, args, ddp):
    """vaelab's refit of the clustering VAE at --cluster-fit-step: on rank 0, then shared."""
    if ddp.leader:
        n = min(train_x.shape[0], max(10000, model.config.clusters))
        with torch.no_grad():
            mu, lv = model.encode(train_x[:n].to(ddp.device, torch.float32))
        params = fit_clusters_to_codes(model, mu.cpu(), lv.cpu(), derived_generator(args.seed, CLUSTER_FIT))
    else:
        params = [model.cluster_means, model.cluster_logvars, model.classifier[1].weight, model.classifier[1].bias]
    for p in params:
        if ddp.enabled:
            dist.broadcast(p.data, src=0)
        state = optimizer.state.get(p)
        if state:  # Adam's moments belonged to the old values
            state["exp_avg"].zero_()
            state["exp_avg_sq"].zero_()


def main(argv=None):
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    ddp = Distributed(args.device)
    if args.batch < ddp.world:
        raise SystemExit(f"train_ddp.py: --batch {args.batch} is smaller than the {ddp.world} processes")
    cfg = vt.ModelConfig(latent=args.latent, hidden=args.hidden, likelihood=args.likelihood,
                         gaussian_sigma=args.sigma, family=args.model, clusters=args.clusters)

    data = vt.load_dataset(args.data)
    cfg.image_h, cfg.image_w = data.image_size
    try:
        cfg.validate()
    except ValueError as e:
        raise SystemExit(f"train_ddp.py: {e}")
    train = data.train[:args.train_limit] if args.train_limit > 0 else data.train
    test = data.test[:args.eval_limit] if args.eval_limit > 0 else data.test
    if args.binarize != "none":
        test = binarized(test, args.seed, 0)  # once, so evaluations compare across epochs
    if args.binarize == "static":
        train = binarized(train, args.seed, 1)
    train_x = as_float(train).to(ddp.device)
    test_x = as_float(test)

    torch.manual_seed(args.seed)
    model = vt.build_model(cfg).to(ddp.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    st = RunState()
    settings = settings_of(args, ddp.world)
    saved = ddp.share(load_resume_state(args) if ddp.leader else None)
    if saved is not None and "error" in saved:
        ddp.close()
        raise SystemExit("train_ddp.py: " + saved["error"])
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        for group in optimizer.param_groups:
            group["lr"] = args.lr
        st.step, st.epoch, st.batch_in_epoch, st.examples = (saved["step"], saved["epoch"], saved["batch_in_epoch"],
                                                              saved["examples"])
    writer = vt.RunWriter(args.run, args.write_every, resume_step=st.step if saved else None) if ddp.leader else None
    if writer:
        writer.write_settings(settings)
        if saved:
            print(f"train_ddp.py: resuming {args.run} at step {st.step} (epoch {st.epoch}, batch {st.batch_in_epoch})",
                  file=sys.stderr)
    net = DistributedDataParallel(model) if ddp.enabled else model

    n_train = train_x.shape[0]
    per_epoch = (n_train + args.batch - 1) // args.batch
    L, d = args.samples, cfg.latent
    window = [0.0, 0.0, 0.0, 0.0]  # examples, Σ recon, Σ kl, Σ loss·examples since the last line
    epoch_sums = [0.0, 0.0]        # examples, Σ elbo in this epoch
    t_window = time.perf_counter()

    def log_step(beta):
        nonlocal window, t_window
        n, recon, kl, loss = ddp.sum(window)
        dt = time.perf_counter() - t_window
        if writer and n > 0:
            writer.log(st.step, st.epoch + st.batch_in_epoch / per_epoch, examples=st.examples,
                       train_elbo=(recon - kl) / n, recon=recon / n, kl=kl / n, loss=loss / n, beta=beta,
                       samples_per_s=n / dt if dt > 0 else 0.0)
        window, t_window = [0.0, 0.0, 0.0, 0.0], time.perf_counter()

    if args.epochs == 0 and st.epoch == 0 and st.step == 0:
        ev = evaluate_test(model, test_x, args, 0, ddp)
        if writer:
            writer.log(0, 0, examples=0, **ev)
    stopped = False
    while st.epoch < args.epochs:
        order = torch.randperm(n_train, generator=derived_generator(args.seed, ORDER, st.epoch)).to(ddp.device)
        while st.batch_in_epoch < per_epoch:
            if args.max_steps and st.step >= args.max_steps:
                stopped = True
                break
            beta = args.beta * (min(1.0, st.step / args.warmup) if args.warmup > 0 else 1.0)
            g0 = st.batch_in_epoch * args.batch
            B = min(args.batch, n_train - g0)
            lo, hi = ddp.my_part(B)
            gen = derived_generator(args.seed, STEP_NOISE, st.step)
            eps = torch.randn(B, L, d, generator=gen)[lo:hi].to(ddp.device)
            x = train_x[order[g0 + lo:g0 + hi]]
            if args.binarize == "dynamic":
                x = (torch.rand(B, x.shape[1], generator=gen)[lo:hi].to(ddp.device) < x).to(torch.float32)
            terms = net(x, eps)
            loss = training_loss(terms, beta, ddp.world / B)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

            with torch.no_grad():
                recon, kl = terms.recon.mean(1).sum().item(), terms.kl.mean(1).sum().item()
            n = hi - lo
            window = [window[0] + n, window[1] + recon, window[2] + kl, window[3] + loss.item() * B / ddp.world]
            epoch_sums = [epoch_sums[0] + n, epoch_sums[1] + recon - kl]
            st.step += 1
            st.batch_in_epoch += 1
            st.examples += B
            if cfg.family == "gmvae" and args.cluster_fit_step > 0 and st.step == args.cluster_fit_step:
                fit_clusters(model, optimizer, train_x, args, ddp)
            if st.step % args.log_every == 0:
                log_step(beta)
            if writer and writer.due(st.step):
                writer.write_weights(model, st.step, st.epoch)
                save_resume_state(args, model, optimizer, st, settings)
        if stopped:
            break
        n, elbo = ddp.sum(epoch_sums)
        st.epoch += 1
        st.batch_in_epoch = 0
        epoch_sums = [0.0, 0.0]
        ev = evaluate_test(model, test_x, args, st.epoch, ddp)
        if writer:
            # A run resumed mid-epoch has the epoch's earlier examples in lines it kept, not here.
            writer.log(st.step, st.epoch, examples=st.examples, train_elbo=elbo / n if n else None, **ev)
            print(f"epoch {st.epoch}/{args.epochs}: step {st.step}, test ELBO {ev['test_elbo']:.2f} "
                  f"(recon {ev['test_recon']:.2f}, KL {ev['test_kl']:.2f})", file=sys.stderr)

    if writer:
        save_resume_state(args, model, optimizer, st, settings)
        if stopped:
            writer.write_weights(model, st.step, st.epoch)
            print(f"train_ddp.py: stopped at step {st.step} (--max-steps); run again to continue", file=sys.stderr)
        else:
            writer.finish(model, st.step, st.epoch, examples=st.examples)
        writer.close()
    ddp.close()


if __name__ == "__main__":
    main()
