#!/usr/bin/python3
# Side-by-side training throughput (samples/s) of vaelab-train and the PyTorch reference
# (pytorch_vae.py --throughput) for 784-400-20 and 784-512-256-2 at batch 32/128/512 with 1 and
# 2 threads, each measurement a separate process timed over about --seconds of training steps.
# Prints a table with the ratio vaelab / PyTorch, the FLOPs of a training step and vaelab's
# achieved GFLOP/s against the machine's fp32 peak (tests/bench/fma_peak, measured in the same
# run: before and after the grid for %peak, and around every vaelab run for %adj); --json-out
# keeps the raw measurements.
# --model conv measures the convolutional VAE instead, on C×S×S images (--channels, --sizes), from a
# synthetic uint8 .npy per shape that the script makes once (numpy; random pixels: the cost of a
# step does not depend on them) in --cache-dir; both programs read the same file.
# --busy-core runs every measurement beside a busy loop (a second process, nice 0) that keeps one
# core loaded, as the UI does when it draws: the graceful-degradation check of issue 6.
#
#   tests/bench/throughput.py                      # vaelab-train from $VAELAB_TRAIN or build/
#   tests/bench/throughput.py --pytorch-only --batches 128
#   tests/bench/throughput.py --model conv --channels 3 --sizes 32,64 --batches 128
#
# vaelab is run through a command template (env VAELAB_BENCH_CMD or --vaelab-cmd) with the
# placeholders {exe} {data} {hidden} {latent} {batch} {threads} {steps}; it must print a JSON
# line with "samples_per_s". Adapt the template if vaelab-train's bench flags change.
import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
DEFAULT_VAELAB_CMD = ("{exe} --data {data} --hidden {hidden} --latent {latent} --likelihood bernoulli "
                      "--batch {batch} --threads {threads} --lr 1e-3 --seed 1 --bench-steps {steps} --json")
DEFAULT_VAELAB_CONV_CMD = ("{exe} --data {data} --model conv --latent {latent} --likelihood bernoulli "
                           "--batch {batch} --threads {threads} --lr 1e-3 --seed 1 --bench-steps {steps} --json")
ARCHS = {"784-400-20": ("400", 20), "784-512-256-2": ("512,256", 2)}


def bench_env(extra=()):
    # OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE may be set machine-wide; let OpenBLAS detect the CPU.
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    env.pop("OPENBLAS_L2_SIZE", None)
    for kv in extra:
        k, _, v = kv.partition("=")
        env[k] = v
    return env


def last_json_with(text, key):
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if key in rec:
                return rec
    return None


def run_json(cmd, what, timeout, extra_env=()):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, env=bench_env(extra_env), timeout=timeout)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"{what}: timed out after {timeout} s: {shlex.join(cmd)}")
    if p.returncode != 0:
        raise RuntimeError(f"{what}: exit {p.returncode}: {shlex.join(cmd)}\n{p.stderr.strip()[-2000:]}")
    rec = last_json_with(p.stdout, "samples_per_s")
    if rec is None:
        raise RuntimeError(f"{what}: no JSON line with samples_per_s in its output: {shlex.join(cmd)}\n"
                           f"{p.stdout.strip()[-1000:]}")
    return rec


def openblas_core_fix(python):
    """The OPENBLAS_CORETYPE that gives PyTorch its best setting here, or None.

    OpenBLAS 0.3.21 (bookworm) does not know some newer CPUs (an AVX-512 Xeon of family 6, model
    207 was one) and falls back to its Prescott (SSE3) kernels: PyTorch ran 2.4x slower there than
    with the SkylakeX kernels the CPU supports. The peer must run its best, so the core type that
    matches the CPU's vector extensions is named for it."""
    probe = ("import ctypes; lib = ctypes.CDLL('libopenblas.so.0'); "
             "lib.openblas_get_corename.restype = ctypes.c_char_p; print(lib.openblas_get_corename().decode())")
    try:
        core = subprocess.run([python, "-c", probe], capture_output=True, text=True, env=bench_env(),
                              timeout=60).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    if core.lower() != "prescott":
        return None
    try:
        flags = set(next(l for l in open("/proc/cpuinfo") if l.startswith("flags")).split(":", 1)[1].split())
    except (OSError, StopIteration):
        return None
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return "SkylakeX"
    if {"avx2", "fma"} <= flags:
        return "Haswell"
    return None


def pytorch_rate(args, hidden, latent, batch, threads):
    cmd = [args.python, os.path.join(HERE, "pytorch_vae.py"), "--throughput", "--data", args.data,
           "--model", getattr(args, "model", "mlp"),
           "--hidden", hidden, "--latent", str(latent), "--batch", str(batch), "--threads", str(threads),
           "--bench-seconds", str(args.seconds), "--warmup", "5"]
    return run_json(cmd, "pytorch", timeout=120 + 10 * args.seconds, extra_env=args.pytorch_env)


def vaelab_rate(args, hidden, latent, batch, threads, guess_rate):
    def cmd_for(steps):
        fields = {"exe": shlex.quote(args.vaelab), "data": shlex.quote(args.data), "hidden": hidden,
                  "latent": latent, "batch": batch, "threads": threads, "steps": steps}
        return shlex.split(args.vaelab_cmd.format(**fields))

    if args.vaelab_steps > 0:
        steps = args.vaelab_steps
    else:
        # Calibrate on a short run (sized from the PyTorch rate), then size the timed run to --seconds.
        cal_steps = max(10, math.ceil(0.5 * guess_rate / batch))
        cal = run_json(cmd_for(cal_steps), "vaelab (calibration)", timeout=300)
        steps = max(10, math.ceil(args.seconds * float(cal["samples_per_s"]) / batch))
    rec = run_json(cmd_for(steps), "vaelab", timeout=300 + 10 * args.seconds)
    rec.setdefault("steps", steps)
    return rec


def layer_dims(hidden, latent, image=784):
    """(in, out) of every dense layer: encoder image → hidden… → 2·latent, decoder latent → hidden… → image."""
    h = [int(v) for v in str(hidden).split(",")]
    enc = [image] + h + [2 * latent]
    dec = [latent] + h[::-1] + [image]
    return list(zip(enc[:-1], enc[1:])) + list(zip(dec[:-1], dec[1:]))


def step_flops(hidden, latent, batch, image=784):
    """FLOPs of one training step per sample: the matrix products (2 per multiply-add) of the forward
    pass (W x), the backward pass (dW = dy xᵀ for every layer, dx = Wᵀ dy for every layer but the
    first, whose input needs no gradient), and Adam's update (≈ 12 per parameter per step, spread over
    the batch). Biases, ReLU, the loss and the KL are elementwise and left out (< 1 %)."""
    dims = layer_dims(hidden, latent, image)
    macs = sum(i * o for i, o in dims)
    first = dims[0][0] * dims[0][1]
    params = sum(i * o + o for i, o in dims)
    gemm = 2 * (macs + macs + (macs - first))
    adam = 12.0 * params / batch
    return {"gemm_per_sample": gemm, "adam_per_sample": adam, "per_sample": gemm + adam, "params": params}


def conv_layers(channels, rows, cols, latent):
    """(multiply-adds, parameters) per sample of every layer of vaelab's conv VAE (pytorch_vae.py's
    ConvVAE) on channels×rows×cols, in order from the encoder's first layer. A convolution costs
    its output pixels × C_in × C_out × 9; a transposed one its input pixels × C_in × C_out × 9."""
    half = lambda n: (n + 1) // 2
    h1, w1 = half(rows), half(cols)
    h2, w2 = half(h1), half(w1)
    flat = 64 * h2 * w2
    conv = lambda pixels, cin, cout: (pixels * cin * cout * 9, cin * cout * 9 + cout)
    dense = lambda i, o: (i * o, i * o + o)
    return [conv(h1 * w1, channels, 32), conv(h2 * w2, 32, 64),      # enc_conv1, enc_conv2
            dense(flat, latent), dense(flat, latent),                # fc21, fc22
            dense(latent, 32 * h2 * w2),                             # dec_fc
            conv(h2 * w2, 32, 64), conv(h1 * w1, 64, 32),            # dec_deconv1, dec_deconv2 (transposed)
            conv(rows * cols, 32, channels)]                         # dec_deconv3 (transposed, stride 1)


def conv_step_flops(channels, rows, cols, latent, batch):
    """FLOPs of one conv VAE training step per sample, counted as step_flops counts the MLP's:
    forward, weight gradients and input gradients (none for the first layer) at 2 per multiply-add,
    and Adam's ≈ 12 per parameter spread over the batch; biases, ReLU and the loss left out."""
    layers = conv_layers(channels, rows, cols, latent)
    macs = sum(m for m, _ in layers)
    first = layers[0][0]
    params = sum(p for _, p in layers)
    gemm = 2 * (macs + macs + (macs - first))
    adam = 12.0 * params / batch
    return {"gemm_per_sample": gemm, "adam_per_sample": adam, "per_sample": gemm + adam, "params": params}


def synthetic_colour_npy(cache_dir, channels, size, count):
    """Path of a count×size×size×channels uint8 .npy of random pixels, made once (with numpy, by
    /usr/bin/python3 or whichever python runs this) and kept in cache_dir."""
    path = os.path.join(cache_dir, f"synthetic_{count}x{size}x{size}x{channels}.npy")
    if not os.path.exists(path):
        import numpy as np
        os.makedirs(cache_dir, exist_ok=True)
        pixels = np.random.default_rng(1).integers(0, 256, size=(count, size, size, channels), dtype=np.uint8)
        np.save(path + ".tmp.npy", pixels)
        os.replace(path + ".tmp.npy", path)
    return path


def measure_peak(args, threads=2, seconds=0.5, repeat=3):
    """fp32 peak from fma_peak (one JSON line), or None if it is not built."""
    if not args.fma_peak or not os.access(args.fma_peak, os.X_OK):
        return None
    p = subprocess.run([args.fma_peak, "--threads", str(threads), "--seconds", str(seconds), "--repeat", str(repeat)],
                       capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        print(f"throughput: warning: fma_peak failed: {p.stderr.strip()}", file=sys.stderr)
        return None
    return json.loads(p.stdout.strip().splitlines()[-1])


class BusyCore:
    """A second process spinning on one core at nice 0 while a measurement runs (None: no-op)."""

    def __init__(self, enabled):
        self.enabled = enabled
        self.proc = None

    def __enter__(self):
        if self.enabled:
            self.proc = subprocess.Popen(["/bin/sh", "-c", "while :; do :; done"])
            time.sleep(0.2)  # let the scheduler place it
        return self

    def __exit__(self, *exc):
        if self.proc:
            self.proc.kill()
            self.proc.wait()


def busy_cores(interval=0.5):
    """Cores kept busy by other processes, sampled from /proc/stat just before a measurement."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    try:
        t0, i0 = sample()
        time.sleep(interval)
        t1, i1 = sample()
    except (OSError, ValueError, IndexError):
        return float("nan")
    return (os.cpu_count() or 1) * (1 - (i1 - i0) / max(1, t1 - t0))


def cpu_jiffies():
    """(total, steal) jiffies of all CPUs from /proc/stat, or None where it cannot be read."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v[:8]), v[7]  # user … steal; guest time is already inside user
    except (OSError, ValueError, IndexError):
        return None


def vaelab_runs_with_peaks(args, hidden, latent, batch, threads, guess_rate, flops_per_sample):
    """--repeat vaelab runs, each between two short fma_peak runs of the same thread count, so that
    every run's GFLOP/s is compared with the peak the machine gave in the same half-minute: on a
    shared host a vCPU can lose a third of its speed for minutes (the 2-thread peak can drop to
    one core's worth and back within a grid), and a peak from before the grid then misstates
    what the code does. Each run also records the hypervisor's steal time, in cores.
    Returns the median record (by samples/s) like median_of, plus "adjacent" (per run: samples/s,
    adjacent peak, fraction, steal) and "adjacent_fraction" (the median of the per-run fractions)."""
    key = f"peak_gflops_{threads}"

    def peak_now():
        p = measure_peak(args, threads=threads, seconds=0.2, repeat=3)  # best of 3, as before the grid
        return p.get(key) if p else None

    peaks = [peak_now()]
    recs, adjacent = [], []
    for _ in range(args.repeat):
        j0 = cpu_jiffies()
        rec = vaelab_rate(args, hidden, latent, batch, threads, guess_rate)
        j1 = cpu_jiffies()
        peaks.append(peak_now())
        sps = float(rec["samples_per_s"])
        steal = ((os.cpu_count() or 1) * (j1[1] - j0[1]) / max(1, j1[0] - j0[0])) if j0 and j1 else None
        entry = {"samples_per_s": round(sps, 1), "steal_cores": None if steal is None else round(steal, 3)}
        if peaks[-2] and peaks[-1]:
            adj = 0.5 * (peaks[-2] + peaks[-1])
            entry["peak_gflops"] = round(adj, 2)
            entry["fraction"] = round(sps * flops_per_sample * 1e-9 / adj, 4)
        adjacent.append(entry)
        recs.append(rec)
    med = median_record(recs)
    med["adjacent"] = adjacent
    fracs = sorted(e["fraction"] for e in adjacent if "fraction" in e)
    if fracs:
        med["adjacent_fraction"] = fracs[(len(fracs) - 1) // 2]
    return med


def per_cpu_rate(rec):
    """Samples per CPU-second of a record with steps, batch and cpu_seconds (None without them)."""
    try:
        return float(rec["steps"]) * float(rec["batch"]) / float(rec["cpu_seconds"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def median_of(n, measure):
    """Runs measure() n times; returns the median record (by samples/s), with every rate listed in
    "all_samples_per_s". The median of a few short runs is robust to one disturbed by a neighbour."""
    return median_record([measure() for _ in range(n)])


def median_record(recs):
    """The median record of recs by samples/s, with every rate listed in "all_samples_per_s"."""
    recs = sorted(recs, key=lambda r: float(r["samples_per_s"]))
    med = dict(recs[(len(recs) - 1) // 2])
    med["all_samples_per_s"] = [round(float(r["samples_per_s"]), 1) for r in recs]
    return med


def find_python():
    for p in ("/usr/bin/python3", sys.executable, "python3"):
        try:
            if subprocess.run([p, "-c", "import torch"], capture_output=True).returncode == 0:
                return p
        except OSError:
            continue
    return None


def add_vaelab_args(ap):
    """The flags that say which vaelab-train to run, how, on which data, and where fma_peak is
    (shared with cost_growth.py)."""
    ap.add_argument("--vaelab", default=os.environ.get("VAELAB_TRAIN")
                    or os.path.join(os.environ.get("BUILD", "build"), "vaelab-train"),
                    help="vaelab-train path (env VAELAB_TRAIN, else $BUILD/vaelab-train, BUILD default build)")
    ap.add_argument("--vaelab-cmd", default=os.environ.get("VAELAB_BENCH_CMD", DEFAULT_VAELAB_CMD),
                    help="command template for one vaelab measurement")
    ap.add_argument("--vaelab-steps", type=int, default=0, help="fixed timed steps for vaelab (0: calibrate)")
    ap.add_argument("--data", default=os.environ.get("DATA", DEFAULT_DATA))
    ap.add_argument("--fma-peak", default=os.environ.get("FMA_PEAK")
                    or os.path.join(os.environ.get("BUILD", "build"), "tests", "bench", "fma_peak"),
                    help="fma_peak path (env FMA_PEAK, else $BUILD/tests/bench/fma_peak)")


def main():
    ap = argparse.ArgumentParser(description="vaelab vs PyTorch training throughput")
    add_vaelab_args(ap)
    ap.add_argument("--pytorch-only", action="store_true", help="skip vaelab")
    ap.add_argument("--python", default=os.environ.get("PYTHON") or find_python(), help="python with torch")
    ap.add_argument("--seconds", type=float, default=3.0, help="timed seconds per measurement")
    ap.add_argument("--repeat", type=int, default=3, help="measurements per cell; the median is shown")
    ap.add_argument("--busy-core", action="store_true",
                    help="run every measurement beside a busy loop keeping one core loaded (nice 0)")
    ap.add_argument("--archs", default=",".join(ARCHS), help="comma list from: " + ", ".join(ARCHS))
    ap.add_argument("--batches", default="32,128,512")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--pytorch-env", action="append", default=[], metavar="KEY=VALUE",
                    help="extra environment for the PyTorch runs, e.g. OMP_WAIT_POLICY=passive (repeatable)")
    ap.add_argument("--blas-as-detected", action="store_true",
                    help="leave OpenBLAS's own kernel choice even where it fell back to Prescott")
    ap.add_argument("--json-out", help="write all measurements here as JSON lines")
    ap.add_argument("--model", default="mlp", choices=["mlp", "conv"],
                    help="conv: the convolutional VAE on --channels × S × S images for each of --sizes")
    ap.add_argument("--channels", type=int, default=3, choices=[1, 3], help="conv: image channels")
    ap.add_argument("--sizes", default="32,64", help="conv: comma list of image sides S")
    ap.add_argument("--latent", type=int, default=20, help="conv: latent dimensions")
    ap.add_argument("--images", type=int, default=2000, help="conv: images in each synthetic .npy")
    ap.add_argument("--cache-dir", default=os.path.join(os.environ.get("BUILD", "build"), "bench-data"),
                    help="conv: where the synthetic .npy files are kept ($BUILD/bench-data)")
    ap.add_argument("--vaelab-conv-cmd", default=DEFAULT_VAELAB_CONV_CMD,
                    help="conv: command template for one vaelab measurement")
    args = ap.parse_args()

    if not args.python:
        sys.exit("throughput: error: no python3 with torch (apt-get install python3-torch, or --python)")
    cases = []  # (label, arguments for the two programs, hidden, latent, FLOPs per sample at a batch)
    if args.model == "conv":
        for size in (int(v) for v in args.sizes.split(",") if v.strip()):
            case = argparse.Namespace(**vars(args))
            case.data = synthetic_colour_npy(args.cache_dir, args.channels, size, args.images)
            case.vaelab_cmd = args.vaelab_conv_cmd
            cases.append((f"conv {args.channels}x{size}x{size}", case, "400", args.latent,
                          lambda b, s=size: conv_step_flops(args.channels, s, s, args.latent, b)))
    else:
        for a in (a.strip() for a in args.archs.split(",") if a.strip()):
            if a not in ARCHS:
                sys.exit(f"throughput: error: unknown arch {a!r} (known: {', '.join(ARCHS)})")
            hidden, latent = ARCHS[a]
            cases.append((a, args, hidden, latent, lambda b, h=hidden, l=latent: step_flops(h, l, b)))
    batches = [int(b) for b in args.batches.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    with_vaelab = not args.pytorch_only
    if with_vaelab and not os.access(args.vaelab, os.X_OK):
        print(f"throughput: warning: vaelab-train not found/executable at {args.vaelab!r}; PyTorch only "
              f"(set VAELAB_TRAIN or BUILD, or pass --pytorch-only to silence this)", file=sys.stderr)
        with_vaelab = False

    if not any(kv.startswith("OPENBLAS_CORETYPE=") for kv in args.pytorch_env) and not args.blas_as_detected:
        core = openblas_core_fix(args.python)
        if core:
            args.pytorch_env.append(f"OPENBLAS_CORETYPE={core}")
            print(f"OpenBLAS fell back to its Prescott kernels on this CPU; PyTorch runs with "
                  f"OPENBLAS_CORETYPE={core} (its best setting; --blas-as-detected keeps the fallback)")
    out = open(args.json_out, "w") if args.json_out else None
    peak = measure_peak(args)
    if peak:
        print(f"fp32 peak ({peak['isa']}, fma_peak before the grid): 1 thread {peak['peak_gflops_1']:.1f} GFLOP/s, "
              f"2 threads {peak['peak_gflops_2']:.1f} GFLOP/s by wall clock; per CPU-second "
              f"{peak['peak_gflops_per_cpu_s_1']:.1f} / {peak['peak_gflops_per_cpu_s_2']:.1f}")
        if out:
            out.write(json.dumps({"peak_before": peak}) + "\n")
    else:
        print("throughput: warning: no fma_peak (build it: cmake --build build --target fma_peak); no peak "
              "fractions", file=sys.stderr)
    if args.busy_core:
        print("busy-core mode: every measurement runs beside a busy loop on one core (nice 0)")
    # "busy": cores used by other processes right before each row; 2-thread figures are only
    # meaningful when it is near 0 (OpenMP threads that lose their core stall each other).
    header = f"{'arch':<14} {'batch':>5} {'thr':>3} {'busy':>5} | {'pytorch s/s':>11}"
    if with_vaelab:
        header += (f" {'vaelab s/s':>11} {'vaelab/pt':>9} {'MFLOP/smp':>9} {'GFLOP/s':>7} {'%peak':>5} {'%adj':>4}"
                   f" | {'pt s/cpu-s':>10} {'vl s/cpu-s':>10} {'ratio':>5} {'%cpu-peak':>9}")
    print(header)
    print("-" * len(header))
    blas_line = None
    failures = 0
    phase_rows = []  # (arch, batch, threads, phase_us) of vaelab's median runs
    adjacent_rows = []  # (arch, batch, threads, per-run samples/s, adjacent peak, fraction, steal)
    for arch, case_args, hidden, latent, flops_at in cases:
        for b in batches:
            for t in threads:
                load = busy_cores()
                fl = flops_at(b)
                if load > 0.3:
                    print(f"throughput: warning: other processes use {load:.1f} cores during {arch} batch {b} "
                          f"threads {t}; the figure is not representative", file=sys.stderr)
                row = f"{arch:<14} {b:5d} {t:3d} {load:5.2f} | "
                try:
                    with BusyCore(args.busy_core):
                        pt = median_of(args.repeat, lambda: pytorch_rate(case_args, hidden, latent, b, t))
                except RuntimeError as e:
                    print(f"throughput: error: {e}", file=sys.stderr)
                    failures += 1
                    continue
                blas_line = blas_line or f"torch {pt.get('torch')}, BLAS {pt.get('blas')} (core {pt.get('blas_core')})"
                row += f"{pt['samples_per_s']:11.0f}"
                vl = None
                if with_vaelab:
                    try:
                        with BusyCore(args.busy_core):
                            if peak:
                                vl = vaelab_runs_with_peaks(case_args, hidden, latent, b, t, pt["samples_per_s"],
                                                            fl["per_sample"])
                            else:
                                vl = median_of(args.repeat,
                                               lambda: vaelab_rate(case_args, hidden, latent, b, t, pt["samples_per_s"]))
                        sps = float(vl["samples_per_s"])
                        if "phase_us" in vl:
                            phase_rows.append((arch, b, t, vl["phase_us"]))
                        if "adjacent" in vl:
                            adjacent_rows.append((arch, b, t, vl["adjacent"]))
                        gflops = sps * fl["per_sample"] * 1e-9
                        key = f"peak_gflops_{t}"
                        frac = f"{100 * gflops / peak[key]:5.0f}" if peak and key in peak else f"{'-':>5}"
                        adj = f"{100 * vl['adjacent_fraction']:4.0f}" if "adjacent_fraction" in vl else f"{'-':>4}"
                        row += (f" {sps:11.0f} {sps / pt['samples_per_s']:9.2f} {fl['per_sample'] * 1e-6:9.2f}"
                                f" {gflops:7.1f} {frac} {adj}")
                        # Per CPU-second of the process's threads (spinning waits count as CPU): on a busy
                        # machine the fairer comparison; %cpu-peak is against one core's FMA rate.
                        pt_cpu, vl_cpu = per_cpu_rate(pt), per_cpu_rate(vl)
                        if pt_cpu and vl_cpu:
                            cpu_frac = (f"{100 * vl_cpu * fl['per_sample'] * 1e-9 / peak['peak_gflops_per_cpu_s_1']:9.0f}"
                                        if peak else f"{'-':>9}")
                            row += f" | {pt_cpu:10.0f} {vl_cpu:10.0f} {vl_cpu / pt_cpu:5.2f} {cpu_frac}"
                    except RuntimeError as e:
                        print(f"throughput: error: {e}", file=sys.stderr)
                        failures += 1
                        row += f" {'error':>11} {'-':>9}"
                print(row, flush=True)
                if out:
                    out.write(json.dumps({"arch": arch, "model": args.model, "data": case_args.data, "batch": b,
                                          "threads": t, "busy_cores_before": round(load, 3),
                                          "busy_core_mode": args.busy_core, "pytorch_env": args.pytorch_env,
                                          "flops": fl, "pytorch": pt, "vaelab": vl}) + "\n")
    if phase_rows:
        # Where vaelab's step time goes (vaelab-train's phase_us, mean µs a step, median run of each
        # cell): the trainer's three stages, then the MLP gradient's phases as % of the whole step (the
        # column phases are one slice's: with two slices side by side, each thread's view).
        names = ["encoder_forward", "decoder_forward", "output_and_loss", "decoder_backward", "prior_terms",
                 "encoder_backward", "weight_gradients"]
        short = ["enc fwd", "dec fwd", "out+loss", "dec bwd", "prior", "enc bwd", "dW"]
        print("\nvaelab step, µs: batch | gradient | optimizer || % of the step: " + " ".join(short))
        for arch, b, t, ph in phase_rows:
            total = ph["batch"] + ph["gradient"] + ph["optimizer"]
            # The column phases are the MLP gradient's; the conv VAE's step reports only the three stages.
            parts = " ".join(f"{100 * ph.get(n, 0) / total:4.1f}%" for n in names) if args.model == "mlp" else "-"
            print(f"{arch:<14} {b:5d} {t:3d} | {ph['batch']:7.0f} {ph['gradient']:8.0f} {ph['optimizer']:7.0f} "
                  f"({100 * ph['optimizer'] / total:4.1f}% optimizer) || {parts}")
    if adjacent_rows:
        print("\nvaelab runs, each against the fma_peak runs just before and after it: samples/s @ peak "
              "GFLOP/s = % of it (steal: cores' worth the hypervisor took during the run)")
        for arch, b, t, runs in adjacent_rows:
            parts = "  ".join(f"{e['samples_per_s']:.0f} @ {e.get('peak_gflops', float('nan')):.0f} = "
                              f"{100 * e.get('fraction', float('nan')):.0f}%"
                              + (f" (steal {e['steal_cores']:.2f})" if e.get("steal_cores") is not None else "")
                              for e in runs)
            print(f"{arch:<14} {b:5d} {t:3d} | {parts}")
    if peak:
        after = measure_peak(args)
        if after:
            print(f"fp32 peak after the grid: 1 thread {after['peak_gflops_1']:.1f}, 2 threads "
                  f"{after['peak_gflops_2']:.1f} GFLOP/s (the %peak column uses the figure before; %adj is "
                  f"the median over a cell's vaelab runs of each run against the mean of the two fma_peak "
                  f"runs around it)")
            if out:
                out.write(json.dumps({"peak_after": after}) + "\n")
    if blas_line:
        print(blas_line + (f"; PyTorch env {' '.join(args.pytorch_env)}" if args.pytorch_env else ""))
    if out:
        out.close()
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
