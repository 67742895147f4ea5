#!/usr/bin/env bash
# vaelab-train --follow beside a live two-process torchrun job (gloo): started before the run folder
# exists, it must print one JSON line per weights file the job writes, end with the final step, exit
# 0 on its own when the job finishes, and score the final weights like PyTorch does (within 2 %).
# usage: follow_ddp.sh VAELAB_TRAIN_BINARY
set -euo pipefail
train=$1
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
run=$work/run

"$train" --follow "$run" --eval-limit 1000 --json --threads 1 >"$work/follow.jsonl" 2>"$work/follow.err" &
follow_pid=$!
# --standalone rendezvous on localhost:29400: CTest runs the torchrun tests one at a time
# (RESOURCE_LOCK torchrun).
/usr/bin/torchrun --standalone --nproc_per_node 2 --redirects 2 --tee 2 \
  "$root/python/train_ddp.py" --run "$run" --epochs 2 --train-limit 4000 --eval-limit 1000 \
  --write-every 25 --latent 8 --seed 11 >"$work/ddp.log" 2>&1 || { cat "$work/ddp.log"; exit 1; }

# The follower exits by itself once it has read the "finished" line.
for _ in $(seq 1 120); do kill -0 "$follow_pid" 2>/dev/null || break; sleep 0.5; done
if kill -0 "$follow_pid" 2>/dev/null; then echo "FAIL: vaelab-train --follow still running 60 s after the run finished"; cat "$work/follow.err"; exit 1; fi
wait "$follow_pid" || { echo "FAIL: vaelab-train --follow exited with $?"; cat "$work/follow.err"; exit 1; }

/usr/bin/python3 - "$run/metrics.jsonl" "$work/follow.jsonl" <<'PY'
import json, sys
metrics = [json.loads(l) for l in open(sys.argv[1])]
follow = [json.loads(l) for l in open(sys.argv[2])]
assert metrics[-1].get("finished"), "the run's last line is not the finished line"
final_step = metrics[-1]["step"]
torch_elbo = [m["test_elbo"] for m in metrics if "test_elbo" in m][-1]
steps = [f["step"] for f in follow]
print("followed steps:", steps, "final step:", final_step)
assert steps == sorted(set(steps)), f"steps not increasing once each: {steps}"
assert len(steps) >= 3, f"expected a line per weights file (every 25 steps and the last), got {steps}"
assert steps[-1] == final_step, f"the last line is step {steps[-1]}, the run ended at {final_step}"
vaelab_elbo = follow[-1]["test_elbo"]
rel = abs(vaelab_elbo - torch_elbo) / abs(torch_elbo)
print(f"final test ELBO: vaelab {vaelab_elbo:.3f}, PyTorch {torch_elbo:.3f} ({100 * rel:.2f} %)")
assert rel < 0.02, "vaelab and PyTorch disagree on the final weights by more than 2 %"
PY
echo "PASS"
