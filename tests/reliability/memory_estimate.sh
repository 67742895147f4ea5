#!/usr/bin/env bash
# The memory estimate against the measured peak resident size: vaelab_memory_probe trains each
# configuration for one epoch and prints both; each must agree within 25 %. The configurations
# are ones where one part dominates: parameters, a step's workspaces (with samples), the
# convolutional and clustering families, several threads. usage: memory_estimate.sh PROBE
set -uo pipefail
probe=${1:?usage: memory_estimate.sh VAELAB_MEMORY_PROBE}
passed=0 failed=0
#       family side hidden    latent batch samples threads
configs=("mlp   28   1024,1024 32     64    1       1"
         "mlp   28   256       2      2048  8       1"
         "conv  28   400       4      256   1       1"
         "conv  28   400       8      512   2       2"
         "gmvae 28   2048      16     256   1       2")
for c in "${configs[@]}"; do
  # shellcheck disable=SC2086
  line=$("$probe" $c) || { echo "FAIL $c: the probe failed"; failed=$((failed + 1)); continue; }
  read -r _ estimate _ peak _ <<<"$line"
  ratio=$(awk -v e="$estimate" -v p="$peak" 'BEGIN { printf "%.3f", e / p }')
  if awk -v r="$ratio" 'BEGIN { exit !(r >= 0.75 && r <= 1.25) }'; then
    passed=$((passed + 1)); echo "ok   $c: estimate/peak $ratio ($line)"
  else
    failed=$((failed + 1)); echo "FAIL $c: estimate/peak $ratio, outside 0.75 to 1.25 ($line)"
  fi
done
echo "$passed passed, $failed failed"
((failed == 0))
