#!/usr/bin/env bash
# vaelab-train --bench-steps: one JSON line whose phase_us says where a step's time goes. Checks
# that every stage and every MLP phase was timed (> 0) and that the MLP phases fit inside the
# gradient stage that contains them. Tiny fixed data; not a performance test (no figure is judged).
# usage: bench_json.sh VAELAB_TRAIN
set -euo pipefail
train=${1:?usage: bench_json.sh VAELAB_TRAIN}
work=$(mktemp -d "${TMPDIR:-/tmp}/vaelab-bench-XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 "$(dirname "$0")/make_idx.py" "$work" 8
for threads in 1 2; do
  "$train" --data "$work" --latent 2 --hidden 16 --batch 8 --threads "$threads" --seed 1 --bench-steps 200 --json \
    >"$work/out.json"
  python3 - "$work/out.json" "$threads" <<'PY'
import json, sys
line = open(sys.argv[1]).read().strip().splitlines()[-1]
r = json.loads(line)
assert r["samples_per_s"] > 0 and r["steps"] == 200 and r["threads"] == int(sys.argv[2]), r
p = r["phase_us"]
stages = ["batch", "gradient", "optimizer"]
mlp = ["encoder_forward", "decoder_forward", "output_and_loss", "decoder_backward", "prior_terms", "encoder_backward",
       "weight_gradients"]
for k in stages + mlp:
    assert p[k] > 0, (k, p)
inside = sum(p[k] for k in mlp)
assert inside <= p["gradient"] * 1.01 + 1.0, ("MLP phases exceed the gradient stage", inside, p)
# A step cannot take longer than the run's wall time allows.
assert sum(p[k] for k in stages) * r["steps"] <= r["seconds"] * 1e6 * 1.01 + 100, (p, r["seconds"])
print(f"threads {sys.argv[2]}: ok", p)
PY
done
