#!/usr/bin/python3
# How vaelab's training cost grows: samples/s, GFLOP/s and % of the fp32 peak against the hidden
# width (one hidden layer, batch 128) and against the batch size (hidden 400), latent 20, for each
# thread count, vaelab-train --bench-steps timed over about --seconds per run (median of --repeat).
# The FLOPs and the peak are counted as in throughput.py (same helpers), so the two tables agree:
# %peak against fma_peak before the table, %adj (the median of each run against the fma_peak runs
# just before and after it) as throughput.py's column of that name.
#
#   tests/bench/cost_growth.py                 # vaelab-train from $VAELAB_TRAIN or build/
#   tests/bench/cost_growth.py --threads 1 --widths 100,400 --batches 32,128
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import throughput as tp  # noqa: E402  (the shared helpers: FLOPs, peak, runs, medians)


def main():
    ap = argparse.ArgumentParser(description="vaelab training cost against hidden width and batch size")
    tp.add_vaelab_args(ap)
    ap.add_argument("--widths", default="100,200,400,800,1600", help="hidden widths at batch 128")
    ap.add_argument("--batches", default="16,32,64,128,256,512,1024", help="batch sizes at hidden 400")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--latent", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=2.0, help="timed seconds per run")
    ap.add_argument("--repeat", type=int, default=3, help="runs per cell; the median is shown")
    args = ap.parse_args()
    if not os.access(args.vaelab, os.X_OK):
        sys.exit(f"cost_growth: no vaelab-train at {args.vaelab} (build first, or set VAELAB_TRAIN)")

    peak = tp.measure_peak(args)
    if peak:
        print(f"fp32 peak ({peak.get('isa')}, fma_peak): 1 thread {peak['peak_gflops_1']:.1f} GFLOP/s, "
              f"2 threads {peak['peak_gflops_2']:.1f}")
    cells = [(int(w), 128) for w in args.widths.split(",")] + [(400, int(b)) for b in args.batches.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    print(f"latent {args.latent}, median of {args.repeat} runs of ~{args.seconds:g} s each; "
          "% of the peak of as many cores as threads")
    head = f"{'hidden':>6} {'batch':>5} {'MFLOP/smp':>9}"
    for t in threads:
        head += f" | {t} thr: {'s/s':>7} {'GFLOP/s':>7} {'%peak':>5} {'%adj':>4}"
    print(head)
    print("-" * len(head))
    for width, batch in cells:
        flops = tp.step_flops(str(width), args.latent, batch)["per_sample"]
        row = f"{width:>6} {batch:>5} {flops / 1e6:>9.2f}"
        for t in threads:
            guess = 2e11 * t / flops  # a first guess for the calibration run only
            if peak:
                rec = tp.vaelab_runs_with_peaks(args, str(width), args.latent, batch, t, guess, flops)
            else:
                rec = tp.median_of(args.repeat, lambda: tp.vaelab_rate(args, str(width), args.latent, batch, t, guess))
            rate = float(rec["samples_per_s"])
            gflops = rate * flops / 1e9
            pk = peak and (peak["peak_gflops_1"] if t == 1 else peak["peak_gflops_2"] * t / 2)
            pct = f"{100 * gflops / pk:>5.0f}" if pk else f"{'-':>5}"
            adj = f"{100 * rec['adjacent_fraction']:>4.0f}" if "adjacent_fraction" in rec else f"{'-':>4}"
            row += f" | {'':>6} {rate:>7.0f} {gflops:>7.1f} {pct} {adj}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
