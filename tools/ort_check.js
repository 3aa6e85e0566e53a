#!/usr/bin/env node
// Runs an ONNX file with ONNX Runtime (CPU, the onnxruntime-node package) on a stored float32
// input and compares the output with a stored reference, as `deformslice check` does for the
// C runtime.
//
// Usage: node tools/ort_check.js MODEL.onnx INPUT.f32 EXPECTED.f32 N,C,H,W [--tolerance T]
//        [--modules DIR]
// DIR is the node_modules folder that contains onnxruntime-node (default: $ORT_NODE_MODULES, then
// bench/ort/node_modules of this repository).
// Prints one line ending in PASS, FAIL or SKIP. Exit status: 0 PASS, 1 FAIL, 2 bad usage,
// 3 SKIP (onnxruntime-node missing, or ONNX Runtime cannot load or run the file).
'use strict';

const fs = require('fs');
const path = require('path');

function usage(message) {
  console.error(`ort_check: ${message}`);
  console.error('usage: node tools/ort_check.js MODEL.onnx INPUT.f32 EXPECTED.f32 N,C,H,W ' +
                '[--tolerance T] [--modules DIR]');
  process.exit(2);
}

function parseArgs(argv) {
  const options = { tolerance: 1e-4, modules: null, positional: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--tolerance') {
      options.tolerance = Number(argv[++i]);
      if (!Number.isFinite(options.tolerance) || options.tolerance < 0)
        usage(`--tolerance needs a non-negative number, got '${argv[i]}'`);
    } else if (argv[i] === '--modules') {
      options.modules = argv[++i];
    } else if (argv[i].startsWith('--')) {
      usage(`unknown option ${argv[i]}`);
    } else {
      options.positional.push(argv[i]);
    }
  }
  if (options.positional.length !== 4) usage('expected 4 arguments');
  const dims = options.positional[3].split(',').map(Number);
  if (dims.length !== 4 || !dims.every((d) => Number.isInteger(d) && d > 0))
    usage(`shape '${options.positional[3]}' is invalid; expected N,C,H,W`);
  options.dims = dims;
  return options;
}

function readF32(file) {
  const bytes = fs.readFileSync(file);
  const values = new Float32Array(bytes.length / 4);
  for (let i = 0; i < values.length; i++) values[i] = bytes.readFloatLE(i * 4);
  return values;
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const [model, inputFile, expectedFile] = options.positional;
  const modules = options.modules || process.env.ORT_NODE_MODULES ||
                  path.join(__dirname, '..', 'bench', 'ort', 'node_modules');
  let ort;
  try {
    ort = require(path.join(path.resolve(modules), 'onnxruntime-node'));
  } catch (e) {
    console.log(`${model}: ONNX Runtime SKIP: onnxruntime-node not found in ${modules} ` +
                '(install it with `npm install --ignore-scripts` in bench/ort, or set ' +
                'ORT_NODE_MODULES)');
    process.exit(3);
  }
  const input = readF32(inputFile);
  const expected = readF32(expectedFile);
  let output;
  try {
    const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 2 });
    const feeds = {};
    feeds[session.inputNames[0]] = new ort.Tensor('float32', input, options.dims);
    const result = await session.run(feeds);
    output = result[session.outputNames[0]].data;
  } catch (e) {
    console.log(`${model}: ONNX Runtime SKIP: cannot run the file: ` +
                e.message.split('\n')[0].slice(0, 300));
    process.exit(3);
  }
  if (output.length !== expected.length) {
    console.log(`${model}: ONNX Runtime FAIL: ${output.length} outputs, the reference has ` +
                `${expected.length}`);
    process.exit(1);
  }
  let worst = 0;
  let worstAt = 0;
  for (let i = 0; i < output.length; i++) {
    const d = Math.abs(output[i] - expected[i]);
    if (Number.isNaN(d) || d > worst) {
      worst = Number.isNaN(d) ? Infinity : d;
      worstAt = i;
    }
  }
  const pass = worst <= options.tolerance;
  console.log(`${model}: ONNX Runtime max abs diff ${worst.toPrecision(3)} at ${worstAt}, ` +
              `tolerance ${options.tolerance}: ${pass ? 'PASS' : 'FAIL'}`);
  process.exit(pass ? 0 : 1);
}

main();
