#!/usr/bin/python3
# python/train_ddp.py under torchrun, two CPU processes (gloo), stopped and resumed, against one
# process: its run folder, its weights in vaelab-train, its ELBOs within 1 %. Small by default
# (CTest); --full compares every family on all of Fashion-MNIST (minutes). test_ddp.py VAELAB_TRAIN
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TRAIN_DDP = os.path.join(HERE, "..", "..", "python", "train_ddp.py")
sys.path.insert(0, os.path.join(HERE, "..", "..", "python"))

from vaelab_torch.safetensors_io import read_safetensors  # noqa: E402

PYTHON = "/usr/bin/python3"
TORCHRUN = "/usr/bin/torchrun"
# Debian's torchrun (torch 1.13, Python 3.11) fails at start unless these are non-zero.
TORCHRUN_FLAGS = ["--standalone", "--nproc_per_node", "2", "--redirects", "2", "--tee", "2"]


SAME_STEPS = 100


class Failure(Exception):
    pass


def check(ok, what):
    if not ok:
        raise Failure(what)


def run(cmd, timeout):
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise Failure(f"exit {out.returncode}: {' '.join(cmd)}\n{out.stdout}\n{out.stderr}")
    return time.perf_counter() - t0


def metrics(folder):
    with open(os.path.join(folder, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def epoch_lines(recs):
    return [r for r in recs if "test_elbo" in r]


def check_finished_run(folder, steps, epochs):
    recs = metrics(folder)
    check(recs and recs[-1].get("finished") is True, f"{folder}: the last metrics line does not say finished")
    check(sum(1 for r in recs if r.get("finished")) == 1, f"{folder}: more than one finished line")
    check(recs[-1]["step"] == steps and recs[-1]["epoch"] == epochs,
          f"{folder}: ends at step {recs[-1]['step']}, epoch {recs[-1]['epoch']}; expected {steps}, {epochs}")
    step_nums = [r["step"] for r in recs if "train_elbo" in r and "test_elbo" not in r]
    check(step_nums == sorted(set(step_nums)), f"{folder}: step lines repeat or go back: {step_nums}")
    check([r["epoch"] for r in epoch_lines(recs)] == list(range(1, epochs + 1)),
          f"{folder}: epoch lines {[r['epoch'] for r in epoch_lines(recs)]}, expected 1..{epochs}")
    _, meta = read_safetensors(os.path.join(folder, "weights.safetensors"))
    check(meta.get("format") == "vaelab-vae" and meta.get("step") == str(steps),
          f"{folder}: weights metadata {meta}")
    return recs


def vaelab_test_elbo(vaelab_train, folder, data, eval_limit):
    out = subprocess.run([vaelab_train, "--import-safetensors", os.path.join(folder, "weights.safetensors"),
                          "--epochs", "0", "--json", "--data", data, "--eval-limit", str(eval_limit)],
                         capture_output=True, text=True, timeout=600)
    check(out.returncode == 0, f"vaelab-train could not evaluate {folder}: {out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])["test_elbo"]


def within(a, b, rel):
    return abs(a - b) <= rel * abs(b)


def compare(name, vaelab_train, data, flags, steps, epochs, eval_limit, stop_at, tmp, timeout):
    """Two processes (stopped at stop_at, then resumed) against one; returns the figures."""
    two, one = os.path.join(tmp, name + "-2proc"), os.path.join(tmp, name + "-1proc")
    cmd2 = [TORCHRUN] + TORCHRUN_FLAGS + [TRAIN_DDP, "--run", two] + flags
    t_two = 0.0
    if stop_at:
        t_two += run(cmd2 + ["--max-steps", str(stop_at)], timeout)
        recs = metrics(two)
        check(not any(r.get("finished") for r in recs), f"{name}: a run stopped by --max-steps says finished")
        check(max(r["step"] for r in recs) == stop_at, f"{name}: the stopped run's metrics go past step {stop_at}")
        _, meta = read_safetensors(os.path.join(two, "weights.safetensors"))
        check(meta.get("step") == str(stop_at), f"{name}: the stopped run's weights are from step {meta.get('step')}")
    t_two += run(cmd2, timeout)
    t_one = run([PYTHON, TRAIN_DDP, "--run", one] + flags, timeout)
    r2 = check_finished_run(two, steps, epochs)
    r1 = check_finished_run(one, steps, epochs)
    e2, e1 = epoch_lines(r2)[-1], epoch_lines(r1)[-1]
    check(e2["examples"] == e1["examples"], f"{name}: examples seen differ")
    # Same batches and noise at every step, whatever the processes and the stop: the training ELBO
    # of each logged window agrees up to the order of float sums, whose effect grows slowly as
    # training goes on; in the first SAME_STEPS steps after the stop (or the start) a wrong batch
    # would move a window by whole nats, float sums by far less than 1e-3.
    steps1 = {r["step"]: r["train_elbo"] for r in r1 if "recon" in r}
    diffs = [(r["step"], abs(r["train_elbo"] - steps1[r["step"]]) / abs(steps1[r["step"]])) for r in r2 if "recon" in r]
    early = max(dv for step, dv in diffs if step <= stop_at + SAME_STEPS)
    worst = max(dv for _, dv in diffs)
    v2 = vaelab_test_elbo(vaelab_train, two, data, eval_limit)
    fig = {"name": name, "examples": e1["examples"], "test_elbo_1proc": e1["test_elbo"],
           "test_elbo_2proc": e2["test_elbo"], "vaelab_test_elbo_2proc": v2,
           "relative_difference": abs(e2["test_elbo"] - e1["test_elbo"]) / abs(e1["test_elbo"]),
           "step_line_difference_early": early, "step_line_difference_worst": worst,
           "seconds_1proc": round(t_one, 1), "seconds_2proc": round(t_two, 1)}
    print(json.dumps(fig), flush=True)
    check(early < 1e-3, f"{name}: a step line's train ELBO differs by {early:.2e} between 2 processes and 1 "
          f"within {SAME_STEPS} steps of step {stop_at}")
    check(within(e2["test_elbo"], e1["test_elbo"], 0.01), f"{name}: 2-process test ELBO {e2['test_elbo']:.3f} is "
          f"not within 1 % of the 1-process {e1['test_elbo']:.3f}")
    check(within(v2, e2["test_elbo"], 0.01), f"{name}: vaelab evaluates the weights to {v2:.3f}, the run said "
          f"{e2['test_elbo']:.3f}")
    return fig


def main():
    p = argparse.ArgumentParser()
    p.add_argument("vaelab_train")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--full", action="store_true", help="full-size comparison for each family (minutes)")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            if not a.full:
                # 3,200 images, global batch 32: 100 steps an epoch, 200 in all; stopped at 70.
                flags = ["--data", a.data, "--train-limit", "3200", "--eval-limit", "1000", "--batch", "32",
                         "--epochs", "2", "--latent", "4", "--hidden", "128,32", "--write-every", "25",
                         "--log-every", "5", "--threads", "1"]
                compare("mlp", a.vaelab_train, a.data, flags, 200, 2, 1000, 70, tmp, 600)
            else:
                common = ["--data", a.data, "--write-every", "500", "--threads", "1"]
                runs = [("mlp", ["--model", "mlp", "--epochs", "3"], 3),
                        ("gmvae", ["--model", "gmvae", "--latent", "10", "--epochs", "3"], 3),
                        ("conv", ["--model", "conv", "--epochs", "1"], 1)]
                for name, flags, epochs in runs:
                    steps = epochs * ((60000 + 127) // 128)
                    compare(name, a.vaelab_train, a.data, common + flags, steps, epochs, 10000, 0, tmp, 7200)
        except Failure as e:
            print(f"FAIL: {e}", file=sys.stderr)
            return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
