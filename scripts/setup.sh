#!/usr/bin/env bash
# Installs the Debian packages vaelab needs (idempotent: skips what is present).
# Not a build script: scripts/run-app.sh, run-tests.sh, run-sanitizers.sh and run-fuzzers.sh call it.
set -euo pipefail

packages=(
  build-essential cmake pkg-config python3 python3-glad
  libeigen3-dev zlib1g-dev libstb-dev doctest-dev
  libimgui-dev libglfw3-dev libgl-dev fonts-dejavu-core
  dataset-fashion-mnist
  xvfb xdotool x11-apps imagemagick
  clang libclang-rt-14-dev  # sanitizer builds and libFuzzer harnesses (scripts/run-tests.sh runs them)
)
if [[ "${VAELAB_WITH_BENCH:-0}" == 1 ]]; then
  packages+=(python3-torch python3-numpy libopenblas0-openmp)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
