#!/usr/bin/env bash
# Runs the benchmarks recorded in docs/benchmarks.md. Usage: bash bench/run.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}

echo "== main job: deformslice compile with no arguments (fresh output folder) =="
rm -rf bench/out/compile
mkdir -p bench/out
"$build/bin/bench_compile" "$build/bin/deformslice" bench/out/compile

echo
echo "== runtime: float against fixed point, one thread =="
"$build/bin/bench_runtime" models/dat_pp_nano.onnx

echo
echo "== runtime speed against ONNX Runtime and PyTorch, 1 and 2 threads =="
if command -v node > /dev/null && [ -d bench/ort/node_modules/onnxruntime-node ]; then
  /usr/bin/python3 bench/speed.py --build "$build" --models "${SPEED_MODELS:-nano}"
else
  echo "skipped: install ONNX Runtime first (cd bench/ort && npm install --ignore-scripts)"
fi
