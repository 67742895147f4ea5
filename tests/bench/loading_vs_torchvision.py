#!/usr/bin/env python3
"""Loading speed against the usual PyTorch way: a folder of 50,000 colour PNG files read into one
uint8 array, by vaelab and by torchvision's ImageFolder with PIL, side by side in one run.

The folder (ten class folders of 32x32 RGB PNG files, smooth colour fields with a little noise so
they compress as photos do, written by PIL at its default level) is made once in --cache.

- vaelab: the whole `vaelab-train --data FOLDER --epochs 0 --eval-limit 1` process (start, decode
  on every core it may use, split, evaluate one image, exit), timed from outside.
- torchvision: `ImageFolder(FOLDER)` (PIL's loader, .convert("RGB")) into one N x 32 x 32 x 3 uint8
  array, timed inside Python from the ImageFolder call to the finished array (Python's start and
  `import torch` are left out, to torchvision's advantage), two ways: a plain loop in the process,
  and a DataLoader with 2 worker processes (its way of using both cores). The best counts.

Each figure is the fastest of --repeat runs (a neighbour only slows a run down); the runs alternate
between the two programs. Not a test: it prints a table and the ratio.

    /usr/bin/python3 tests/bench/loading_vs_torchvision.py --train build/vaelab-train
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

CLASSES = 10


def make_folder(root, count, size):
    """count PNG files of size x size RGB in CLASSES class folders, written once (atomic rename)."""
    import numpy as np
    from PIL import Image

    if os.path.isdir(root):
        return
    tmp = root + ".tmp"
    subprocess.run(["rm", "-rf", tmp], check=True)
    rng = np.random.default_rng(1)
    print(f"making {count} PNG files in {root} (once)...", file=sys.stderr)
    for c in range(CLASSES):
        os.makedirs(os.path.join(tmp, f"class{c}"))
    for i in range(count):
        # A 4x4 field of random colours, stretched bilinearly to size x size, plus mild noise.
        corners = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.float32)
        field = np.asarray(Image.fromarray(corners.astype(np.uint8)).resize((size, size), Image.BILINEAR),
                           dtype=np.float32)
        pixels = np.clip(field + rng.normal(0, 6, size=field.shape), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(os.path.join(tmp, f"class{i % CLASSES}", f"img_{i:06d}.png"))
    os.rename(tmp, root)


def time_vaelab(train, root, cores):
    """Wall seconds of the whole vaelab-train process and the image count it reports."""
    cmd = ["taskset", "-c", cores, train, "--data", root, "--epochs", "0", "--eval-limit", "1"]
    t0 = time.perf_counter()
    run = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - t0
    if run.returncode != 0:
        sys.exit(f"vaelab-train failed ({run.returncode}):\n{run.stderr}")
    loaded = re.search(r"loaded (\d+) images", run.stderr.replace(",", ""))
    return seconds, int(loaded.group(1)) if loaded else None


TORCHVISION_CHILD = r"""
import json, sys, time
import numpy as np
import torch
from torchvision.datasets import ImageFolder
root, workers = sys.argv[1], int(sys.argv[2])
torch.set_num_threads(1)
t0 = time.perf_counter()
if workers == 0:
    ds = ImageFolder(root)
    pixels = np.stack([np.asarray(ds[i][0], dtype=np.uint8) for i in range(len(ds))])
else:
    from torchvision.transforms import PILToTensor
    ds = ImageFolder(root, transform=PILToTensor())
    loader = torch.utils.data.DataLoader(ds, batch_size=500, num_workers=workers)
    pixels = torch.cat([x for x, _ in loader]).permute(0, 2, 3, 1).contiguous().numpy()
seconds = time.perf_counter() - t0
print(json.dumps({"seconds": seconds, "shape": list(pixels.shape), "dtype": str(pixels.dtype)}))
"""


def time_torchvision(python, root, workers, cores):
    """Seconds torchvision takes inside its process, and the array's shape."""
    cmd = ["taskset", "-c", cores, python, "-c", TORCHVISION_CHILD, root, str(workers)]
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        sys.exit(f"torchvision run failed ({run.returncode}):\n{run.stderr}")
    result = json.loads(run.stdout.strip().splitlines()[-1])
    return result["seconds"], result["shape"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", default=os.environ.get("VAELAB_TRAIN", "build/vaelab-train"))
    ap.add_argument("--python", default="/usr/bin/python3", help="a Python with torch and torchvision")
    ap.add_argument("--images", type=int, default=50000)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--cache", default=os.environ.get("CACHE", "/tmp/vaelab-loading-bench"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cores", default="0,1", help="taskset list both programs run on")
    args = ap.parse_args()
    if not os.access(args.train, os.X_OK):
        sys.exit(f"no vaelab-train at {args.train} (--train or VAELAB_TRAIN)")

    root = os.path.join(args.cache, f"png{args.images}_{args.size}")
    make_folder(root, args.images, args.size)

    best = {}
    counts = {}
    for _ in range(args.repeat):
        for name, run in (("vaelab", lambda: time_vaelab(args.train, root, args.cores)),
                          ("torchvision, 1 process", lambda: time_torchvision(args.python, root, 0, args.cores)),
                          ("torchvision, DataLoader 2 workers",
                           lambda: time_torchvision(args.python, root, 2, args.cores))):
            seconds, count = run()
            best[name] = min(best.get(name, seconds), seconds)
            counts[name] = count

    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    print(f"{args.images} PNG files, {args.size}x{args.size} RGB, cores {args.cores}, "
          f"best of {args.repeat}; load average {load}")
    print(f"{'reader':36} {'seconds':>8} {'images/s':>9}  what it made")
    for name, seconds in best.items():
        print(f"{name:36} {seconds:8.3f} {args.images / seconds:9.0f}  {counts[name]}")
    peer = min(v for k, v in best.items() if k.startswith("torchvision"))
    print(f"vaelab is {peer / best['vaelab']:.2f}x faster than torchvision's best "
          f"(whole vaelab process against torchvision's in-process time)")


if __name__ == "__main__":
    main()
