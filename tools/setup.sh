#!/usr/bin/env bash
# Installs the Debian packages deformslice needs to build, test and run its demo. Quick and
# silent when everything is already installed. With --models it also installs what the
# Python reference-model tools need (PyTorch, ONNX).
set -euo pipefail

packages=(cmake gcc make pkg-config
  libprotobuf-c-dev protobuf-c-compiler libonnx-dev
  libcjson-dev libzstd-dev zlib1g-dev libcriterion-dev libjpeg-dev libpng-dev
  dataset-fashion-mnist)
if [[ "${1:-}" == "--models" ]]; then
  # Without OpenBLAS, Debian's torch falls back to the reference BLAS and trains ~30x slower.
  packages+=(python3-torch python3-onnx python3-numpy python3-pil libopenblas0-pthread)
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "setup: installing ${missing[*]}"
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  sudo="sudo"
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
