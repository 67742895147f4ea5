#!/usr/bin/env bash
# Installs the Debian packages vaelab needs (idempotent: skips what is present): what building and
# running the app needs; with --test also the test tools; with VAELAB_WITH_BENCH=1 the benchmarks'
# PyTorch reference. Not a build script: scripts/run-app.sh calls it plain, the test scripts with --test.
# usage: setup.sh [--test]
set -euo pipefail

packages=(
  build-essential cmake pkg-config python3 python3-glad
  libeigen3-dev zlib1g-dev libstb-dev doctest-dev
  libspng-dev libturbojpeg0-dev libwebp-dev  # image folders: PNG, JPEG and WebP decoders
  libimgui-dev libglfw3-dev libgl-dev fonts-dejavu-core
  dataset-fashion-mnist
  libzip-dev  # .npz archives (NumPy's zip of .npy members)
)
case "${1:-}" in
  "") ;;
  --test)
    packages+=(
      xvfb xdotool x11-apps imagemagick  # the GUI end-to-end test under a virtual display
      clang libclang-rt-14-dev           # sanitizer builds and libFuzzer harnesses
      python3-torch python3-numpy        # the PyTorch side (python/) against vaelab, torchrun jobs
    ) ;;
  *) echo "usage: setup.sh [--test]" >&2; exit 2 ;;
esac
if [[ "${VAELAB_WITH_BENCH:-0}" == 1 ]]; then
  packages+=(python3-torch python3-numpy libopenblas0-openmp
    python3-torchvision python3-pil)  # tests/bench/loading_vs_torchvision.py's peer
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
