#!/usr/bin/env bash
# Trains the same VAE (784-400-20, Bernoulli, batch 128, Adam 1e-3, L=1, seed 1) with vaelab-train
# and with the PyTorch reference (tests/bench/pytorch_vae.py), one after the other, then prints
# the test ELBO per epoch side by side and passes when the final epochs agree within TOL percent.
#
#   tests/bench/compare_elbo.sh                 # BUILD=build, 10 epochs, 1 % tolerance
#   BUILD=build-rel EPOCHS=3 TOL=2 tests/bench/compare_elbo.sh
#
# Environment (all optional):
#   BUILD          build directory holding vaelab-train (default: build)
#   VAELAB_TRAIN   path of vaelab-train (default: $BUILD/vaelab-train)
#   VAELAB_ARGS    extra arguments for vaelab-train only (e.g. "--threads 2")
#   DATA           Fashion-MNIST IDX directory (default: /usr/share/datasets/fashion-mnist)
#   EPOCHS SEED THREADS TOL   (defaults 10, 1, 2, 1 — TOL in percent of |PyTorch test ELBO|)
#   PYTHON         interpreter with torch (default: the first of /usr/bin/python3, python3 that has it)
#   PYTORCH_JSONL  use this stored PyTorch run (JSON lines) instead of running PyTorch
#   KEEP           directory to keep both raw JSON-lines outputs in
# Exit status: 0 pass, 1 fail (difference above TOL), 2 set-up or run error.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=${BUILD:-build}
VAELAB_TRAIN=${VAELAB_TRAIN:-$BUILD/vaelab-train}
VAELAB_ARGS=${VAELAB_ARGS:-}
DATA=${DATA:-/usr/share/datasets/fashion-mnist}
EPOCHS=${EPOCHS:-10}
SEED=${SEED:-1}
THREADS=${THREADS:-2}
TOL=${TOL:-1}
PYTORCH_JSONL=${PYTORCH_JSONL:-}

die() { echo "compare_elbo: error: $*" >&2; exit 2; }

[[ -e $VAELAB_TRAIN ]] || die "vaelab-train not found at '$VAELAB_TRAIN' (build it, or set BUILD=<build dir> or VAELAB_TRAIN=<path>)"
[[ -x $VAELAB_TRAIN ]] || die "'$VAELAB_TRAIN' is not executable"
[[ -d $DATA ]] || die "data directory '$DATA' does not exist (set DATA=<dir with *-images-idx3-ubyte.gz>)"
[[ -n $(compgen -G "$DATA/train-images-idx3-ubyte*") ]] || die "no train-images-idx3-ubyte[.gz] in '$DATA'"

if [[ -z ${PYTHON:-} ]]; then
  for p in /usr/bin/python3 python3; do
    if command -v "$p" >/dev/null && "$p" -c 'import torch' 2>/dev/null; then PYTHON=$p; break; fi
  done
fi
if [[ -z $PYTORCH_JSONL ]]; then
  [[ -n ${PYTHON:-} ]] || die "no python3 with torch found (apt-get install python3-torch, set PYTHON=..., or PYTORCH_JSONL=<stored run>)"
else
  [[ -f $PYTORCH_JSONL ]] || die "PYTORCH_JSONL='$PYTORCH_JSONL' is not a file"
  PYTHON=${PYTHON:-python3}
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE may be set machine-wide; let OpenBLAS detect the CPU.
run() { env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$@"; }

common=(--data "$DATA" --latent 20 --hidden 400 --batch 128 --epochs "$EPOCHS" --lr 1e-3 --samples 1 --seed "$SEED" --json)

echo "== vaelab: $VAELAB_TRAIN ${common[*]} --likelihood bernoulli $VAELAB_ARGS" >&2
# shellcheck disable=SC2086  # VAELAB_ARGS is meant to split into words
if ! run "$VAELAB_TRAIN" "${common[@]}" --likelihood bernoulli $VAELAB_ARGS >"$work/vaelab.jsonl" 2>"$work/vaelab.err"; then
  cat "$work/vaelab.err" >&2
  die "vaelab-train failed (output above)"
fi

if [[ -z $PYTORCH_JSONL ]]; then
  echo "== pytorch: $PYTHON $here/pytorch_vae.py ${common[*]} --threads $THREADS" >&2
  if ! run "$PYTHON" "$here/pytorch_vae.py" "${common[@]}" --threads "$THREADS" >"$work/pytorch.jsonl" 2>"$work/pytorch.err"; then
    cat "$work/pytorch.err" >&2
    die "pytorch_vae.py failed (output above)"
  fi
  grep '^#' "$work/pytorch.err" >&2 || true
else
  echo "== pytorch: stored run $PYTORCH_JSONL" >&2
  cp "$PYTORCH_JSONL" "$work/pytorch.jsonl"
fi

if [[ -n ${KEEP:-} ]]; then
  mkdir -p "$KEEP" && cp "$work/vaelab.jsonl" "$work/pytorch.jsonl" "$KEEP/"
fi

set +e
"$PYTHON" - "$work/vaelab.jsonl" "$work/pytorch.jsonl" "$TOL" "$EPOCHS" <<'EOF'
import json, sys

def err(msg):
    print(f"compare_elbo: error: {msg}", file=sys.stderr)
    sys.exit(2)

def load(path, who):
    by_epoch = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                err(f"{who}: bad JSON line {line!r}: {e}")
            if "epoch" in rec and "test_elbo" in rec and rec["epoch"] >= 1:
                by_epoch[int(rec["epoch"])] = rec
    if not by_epoch:
        err(f"{who} printed no per-epoch JSON lines with 'epoch' and 'test_elbo'")
    return by_epoch

v = load(sys.argv[1], "vaelab")
p = load(sys.argv[2], "pytorch")
tol = float(sys.argv[3])
epochs = int(sys.argv[4])
common = sorted(e for e in set(v) & set(p) if e <= epochs)
if not common:
    err("no epoch appears in both runs")

def fmt(x, spec="9.3f"):
    return format(x, spec) if isinstance(x, (int, float)) else format("-", ">9")

print(f"{'epoch':>5} | {'vaelab test':>11} {'pytorch test':>12} {'diff':>8} {'rel %':>7} | "
      f"{'vaelab train':>12} {'pytorch train':>13} | {'vaelab kl':>9} {'pytorch kl':>10} | {'vaelab s/s':>10} {'pytorch s/s':>11}")
for e in common:
    a, b = v[e], p[e]
    d = a["test_elbo"] - b["test_elbo"]
    print(f"{e:5d} | {a['test_elbo']:11.3f} {b['test_elbo']:12.3f} {d:8.3f} {100 * d / abs(b['test_elbo']):7.3f} | "
          f"{fmt(a.get('train_elbo'), '12.3f')} {fmt(p[e].get('train_elbo'), '13.3f')} | "
          f"{fmt(a.get('test_kl'), '9.3f')} {fmt(b.get('test_kl'), '10.3f')} | "
          f"{fmt(a.get('samples_per_s'), '10.0f')} {fmt(b.get('samples_per_s'), '11.0f')}")
last = epochs
for who, run in (("vaelab", v), ("pytorch", p)):
    if last not in run:
        err(f"{who} has no line for the final epoch {last} (epochs seen: {sorted(run)})")
va, pa = v[last]["test_elbo"], p[last]["test_elbo"]
rel = abs(va - pa) / abs(pa) * 100
missing = sorted(e for e in set(p) ^ set(v) if e <= epochs)
if missing:
    print(f"note: epochs only in one run: {missing}")
ok = rel <= tol
print(f"final (epoch {last}): vaelab {va:.3f} vs pytorch {pa:.3f} nats, relative difference {rel:.3f} % "
      f"(tolerance {tol:g} %): {'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
EOF
status=$?
set -e
exit $status
