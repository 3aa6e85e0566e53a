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
echo "== cost: sliced traffic against gather, cache, whole map and the lower bound =="
"$build/bin/bench_cost" auto+1 20

echo
echo "== offset model: offsets of the bundled model on Fashion-MNIST validation images =="
"$build/bin/bench_offsets" models/dat_pp_nano.onnx bench/out/offset_model.json 1000

echo
echo "== DRAM model: oracle and executor on DAT-T++ at 800x1333, measured strategies =="
"$build/bin/bench_dram" models/dat_pp_nano.onnx tests/fixtures/fashion_test3_32.f32

echo
echo "== precision: float, pure int8, int16 by class and mixed under several budgets =="
"$build/bin/bench_precision" models/dat_pp_nano.onnx 10000 1024,4096,16384,65536

echo
echo "== runtime speed against ONNX Runtime and PyTorch, 1 and 2 threads =="
if command -v node > /dev/null && [ -d bench/ort/node_modules/onnxruntime-node ]; then
  /usr/bin/python3 bench/speed.py --build "$build" --models "${SPEED_MODELS:-nano}"
else
  echo "skipped: install ONNX Runtime first (cd bench/ort && npm install --ignore-scripts)"
fi
