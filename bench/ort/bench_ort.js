#!/usr/bin/env node
// Times ONNX Runtime (CPU, the onnxruntime-node package) on one ONNX file at batch 1:
// warm-up runs, then N timed runs on a fixed random input, with the intra-op thread count
// given. Prints one JSON line with images per second and the process's peak resident memory
// (VmHWM from /proc/self/status), so bench/speed.py can compare it with the C runtime.
//
// Usage: node bench/ort/bench_ort.js MODEL.onnx [--threads N] [--iterations N] [--warmup N]
//                                    [--spin 0|1]
// --spin 0 sets session.intra_op.allow_spinning to 0, so idle intra-op threads block instead of
// spinning: on a machine shared with other jobs, spinning threads slow each other down.
// Exit status: 0 on success, 2 on bad arguments, 3 when ONNX Runtime cannot load or run the
// file (the JSON line then carries the reason in "error").
'use strict';

const fs = require('fs');
const path = require('path');

function usage(message) {
  if (message) console.error(`bench_ort: ${message}`);
  console.error('usage: node bench_ort.js MODEL.onnx [--threads N] [--iterations N] ' +
                '[--warmup N] [--spin 0|1]');
  process.exit(2);
}

function parseArgs(argv) {
  const options = { model: null, threads: 1, iterations: 20, warmup: 3, spin: 1 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--threads' || arg === '--iterations' || arg === '--warmup' || arg === '--spin') {
      const value = Number(argv[++i]);
      const low = arg === '--warmup' || arg === '--spin' ? 0 : 1;
      if (!Number.isInteger(value) || value < low || (arg === '--spin' && value > 1))
        usage(`${arg} needs an integer of at least ${low}, got '${argv[i]}'`);
      options[arg.slice(2)] = value;
    } else if (arg.startsWith('--')) {
      usage(`unknown option ${arg}`);
    } else if (options.model === null) {
      options.model = arg;
    } else {
      usage(`unexpected argument ${arg}`);
    }
  }
  if (options.model === null) usage('the ONNX file is missing');
  return options;
}

// Peak resident set size of this process in bytes, or null where /proc is missing.
function peakRssBytes() {
  try {
    const match = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
    return match ? Number(match[1]) * 1024 : null;
  } catch (e) {
    return null;
  }
}

// Explains the most common load failures in words a reader of the benchmark table can use.
function explain(message) {
  if (/Could not find an implementation for GridSample/.test(message))
    return 'ONNX Runtime has no GridSample kernel for these input types: its CPU GridSample ' +
           'takes a float32 grid, and this export computes the grid in float64';
  if (/Could not find an implementation/.test(message))
    return 'ONNX Runtime has no CPU kernel for an op or type of this file';
  if (/ENOENT|No such file/.test(message)) return 'the file does not exist';
  return 'ONNX Runtime rejected the file';
}

function report(fields) {
  console.log(JSON.stringify(Object.assign({ runtime: 'onnxruntime-node' }, fields)));
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  let ort;
  try {
    ort = require(path.join(__dirname, 'node_modules', 'onnxruntime-node'));
  } catch (e) {
    report({ model: options.model, error: 'onnxruntime-node is not installed: run ' +
             '`npm install --ignore-scripts` in bench/ort (' + e.message.split('\n')[0] + ')' });
    process.exit(3);
  }
  const version = require(path.join(__dirname, 'node_modules', 'onnxruntime-node',
                                    'package.json')).version;

  let session;
  try {
    session = await ort.InferenceSession.create(options.model, {
      intraOpNumThreads: options.threads,
      interOpNumThreads: 1,
      executionMode: 'sequential',
      graphOptimizationLevel: 'all',
      extra: { session: { intra_op: { allow_spinning: String(options.spin) } } },
    });
  } catch (e) {
    const message = String(e.message || e).split('\n')[0];
    report({ model: options.model, version, threads: options.threads,
             error: `cannot load: ${explain(message)} (${message})` });
    process.exit(3);
  }

  const inputName = session.inputNames[0];
  const meta = session.inputMetadata ? session.inputMetadata[0] : null;
  let dims = meta && meta.shape ? meta.shape : null;
  if (!dims || dims.some((d) => typeof d !== 'number' || d < 1)) {
    report({ model: options.model, version, threads: options.threads,
             error: `input '${inputName}' has no static shape (${JSON.stringify(dims)})` });
    process.exit(3);
  }
  const count = dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(count);
  let state = 12345;
  for (let i = 0; i < count; i++) {
    state = (state * 1103515245 + 12345) >>> 0;
    data[i] = (state / 4294967296) * 2 - 1;
  }
  const feeds = { [inputName]: new ort.Tensor('float32', data, dims) };

  try {
    for (let i = 0; i < options.warmup; i++) await session.run(feeds);
    const start = process.hrtime.bigint();
    for (let i = 0; i < options.iterations; i++) await session.run(feeds);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    report({ model: options.model, version, threads: options.threads, spin: options.spin,
             iterations: options.iterations, input_shape: dims,
             ms_per_image: (1e3 * seconds) / options.iterations,
             images_per_second: options.iterations / seconds,
             peak_rss_bytes: peakRssBytes() });
  } catch (e) {
    const message = String(e.message || e).split('\n')[0];
    report({ model: options.model, version, threads: options.threads,
             error: `cannot run: ${message}` });
    process.exit(3);
  }
}

main();
