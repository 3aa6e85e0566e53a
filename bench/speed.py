#!/usr/bin/python3
"""Compare the C runtime's speed and memory with ONNX Runtime and PyTorch in one run.

For each model it prepares a quantized artifact (bench_speed prepare). Then, at batch 1 and
for each thread count, it times the C runtime in float and fixed point (bench_speed run), ONNX
Runtime float (bench/ort/bench_ort.js) and PyTorch float (bench/bench_torch.py), each with that
many intra-op threads. Every measurement runs in its own process, so each peak resident memory
(VmHWM) is that configuration's own. It prints one Markdown table
per model with images per second, the ratio to ONNX Runtime at the same thread count, the C
runtime's arena bytes and every process's peak memory, and writes all records to
OUT/results.json.

Models that a runtime cannot load get a row with the reason. ONNX Runtime's CPU GridSample
takes only a float32 grid, and PyTorch exports of DAT compute the grid in float64: for those
files ONNX Runtime runs a copy with the grids cast to float32 (bench/ort_float_grid.py), and
the table says so.

Usage: /usr/bin/python3 bench/speed.py [--models nano,dat_t,dat_pp_t,dat_pp_t_800]
                                       [--threads 1,2] [--build build] [--out bench/out/speed]
                                       [--exports /work/exports]
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Model name: ONNX file, PyTorch model name, input size, timed iterations, warm-up iterations
# and rounds. The ONNX file is relative to the exports folder, except the bundled model's.
MODELS = {
    "nano": ("models/dat_pp_nano.onnx", "dat_pp_nano", "32", 100, 10, 3),
    "dat_t": ("dat_t_224_op16.onnx", "dat_t", "224", 5, 1, 2),
    "dat_pp_t": ("dat_pp_t_224_op16.onnx", "dat_pp_t", "224", 5, 1, 2),
    "dat_pp_t_800": ("dat_pp_t_800x1333_op16.onnx", "dat_pp_t", "800x1333", 1, 0, 1),
}

# Idle worker threads block rather than spin in every runtime, because on a machine shared
# with other jobs the spinning threads of one runtime slow down its working threads. The C runtime's pool
# spins briefly and then blocks; ONNX Runtime gets --spin 0 (session.intra_op.allow_spinning);
# PyTorch's OpenMP threads get OMP_WAIT_POLICY=PASSIVE.
TORCH_ENV = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")

# Wall-clock limit of one measurement, in seconds.
RUN_TIMEOUT_S = 1800


def run_json(command, label, env=None):
    """Run command and return its last JSON line, or a record with the error."""
    start = time.time()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT_S, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"{label}: timed out after {RUN_TIMEOUT_S} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if lines:
        record = json.loads(lines[-1])
        if done.returncode != 0 and "error" not in record:
            record["error"] = f"{label}: exit status {done.returncode}"
        return record
    message = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
    if not message.startswith(label):
        message = f"{label}: {message}"
    return {"error": message, "seconds": time.time() - start}


def onnx_path(name, exports):
    relative = MODELS[name][0]
    if relative.startswith("models/"):
        return os.path.join(ROOT, relative)
    return os.path.join(exports, relative)


def prepare_ort_file(path, out_dir):
    """Return the file ONNX Runtime can load, path or a float32-grid copy, as (file, note,
    error)."""
    probe = run_json(["node", "bench/ort/bench_ort.js", path, "--iterations", "1",
                      "--warmup", "0"], "onnxruntime")
    if "error" not in probe:
        return path, "", None
    if "GridSample" not in probe["error"]:
        return None, "", probe["error"]
    copy = os.path.join(out_dir, os.path.basename(path).replace(".onnx", "_f32grid.onnx"))
    done = subprocess.run(["/usr/bin/python3", "bench/ort_float_grid.py", path, copy], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        return None, "", probe["error"] + "; the float32-grid copy failed: " + done.stderr
    note = ("grids cast to float32 (" + done.stdout.strip() + " Cast nodes), because ONNX "
            "Runtime cannot load the float64 grids of the export")
    return copy, note, None


def measure(name, threads_list, build, out_dir, exports):
    path = onnx_path(name, exports)
    _, torch_name, size, iterations, warmup, rounds = MODELS[name]
    records = []
    if not os.path.exists(path):
        records.append({"runtime": "all", "error": f"{path} does not exist (not exported yet)"})
        return records

    artifact = os.path.join(out_dir, name + ".dsa")
    prepared = subprocess.run([os.path.join(build, "bin", "bench_speed"), "prepare", path,
                               artifact], cwd=ROOT, capture_output=True, text=True)
    ours_error = None
    if prepared.returncode != 0:
        ours_error = "deformslice cannot import it: " + prepared.stderr.strip().splitlines()[-1]
    ort_file, ort_note, ort_error = prepare_ort_file(path, out_dir)

    counts = ["--iterations", str(iterations), "--warmup", str(warmup)]
    commands = []  # (fixed fields of the record, command, label, environment)
    for threads in threads_list:
        for mode in ("float", "fixed"):
            fields = {"runtime": "deformslice", "mode": mode, "threads": threads}
            if ours_error:
                records.append(dict(fields, error=ours_error))
                continue
            commands.append((fields, [os.path.join(build, "bin", "bench_speed"), "run", artifact,
                                      "--mode", mode, "--threads", str(threads)] + counts,
                             "bench_speed", None))
        fields = {"runtime": "onnxruntime-node", "threads": threads}
        if ort_error:
            records.append(dict(fields, error=ort_error))
        else:
            commands.append((dict(fields, note=ort_note),
                             ["node", "bench/ort/bench_ort.js", ort_file, "--threads", str(threads),
                              "--spin", "0"] + counts, "onnxruntime", None))
        commands.append(({"runtime": "pytorch", "threads": threads},
                         ["/usr/bin/python3", "bench/bench_torch.py", torch_name, "--size", size,
                          "--threads", str(threads)] + counts, "pytorch", TORCH_ENV))

    # Every configuration runs once per round, the rounds interleaved, and keeps its fastest
    # round, because the machine's other load slows some rounds and never speeds one up.
    best = [None] * len(commands)
    for _ in range(rounds):
        for i, (fields, command, label, env) in enumerate(commands):
            record = run_json(command, label, env)
            record.update(fields)
            print(json.dumps(record), file=sys.stderr)
            if best[i] is None or "error" in best[i] or (
                    "error" not in record and
                    record["images_per_second"] > best[i]["images_per_second"]):
                if best[i] is not None and "peak_rss_bytes" in best[i]:
                    record["peak_rss_bytes"] = max(record.get("peak_rss_bytes") or 0,
                                                   best[i]["peak_rss_bytes"] or 0)
                best[i] = record
    records.extend(best)
    rank = {"deformslice": 0, "onnxruntime-node": 1, "pytorch": 2}
    records.sort(key=lambda r: (r.get("threads", 0), rank.get(r.get("runtime"), 3),
                                r.get("mode") != "float"))
    load = os.getloadavg()
    records.append({"runtime": "load average after the runs", "load": load[0]})
    return records


def mib(value):
    return "" if not value else f"{value / 1048576:.1f}"


def print_table(name, records):
    path_note = MODELS[name][0]
    print(f"\n#### {name} ({path_note}, input {MODELS[name][2]}, batch 1, best of "
          f"{MODELS[name][5]} rounds)\n")
    print("| runtime | threads | ms per image | images/s | vs ONNX Runtime | arena MiB | "
          "of which packed weights MiB | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|")
    ort = {r.get("threads"): r for r in records
           if r.get("runtime") == "onnxruntime-node" and "error" not in r}
    notes = []
    for r in records:
        if "load" in r:
            notes.append(f"load average of the machine after the runs: {r['load']:.1f} (2 cores)")
            continue
        label = r.get("runtime", "?")
        if label == "deformslice":
            label = f"deformslice {r.get('mode')}"
        if "error" in r:
            print(f"| {label} | {r.get('threads', '')} | - | - | - | - | - | - |")
            notes.append(f"{label}: {r['error']}")
            continue
        base = ort.get(r.get("threads"))
        ratio = ""
        if base is not None:
            ratio = f"{r['images_per_second'] / base['images_per_second']:.2f}x"
        print(f"| {label} | {r['threads']} | {r['ms_per_image']:.2f} | "
              f"{r['images_per_second']:.3g} | {ratio} | {mib(r.get('arena_bytes'))} | "
              f"{mib(r.get('packed_bytes'))} | {mib(r.get('peak_rss_bytes'))} |")
        if r.get("note"):
            notes.append(f"{label}: {r['note']}")
    for note in dict.fromkeys(notes):
        print(f"\n- {note}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="nano,dat_t,dat_pp_t,dat_pp_t_800")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--build", default="build")
    parser.add_argument("--out", default="bench/out/speed")
    parser.add_argument("--exports", default="/work/exports")
    args = parser.parse_args()
    names = [n for n in args.models.split(",") if n]
    for n in names:
        if n not in MODELS:
            parser.error(f"unknown model {n!r}: use {', '.join(MODELS)}")
    threads_list = [int(t) for t in args.threads.split(",")]
    out_dir = os.path.join(ROOT, args.out)
    os.makedirs(out_dir, exist_ok=True)

    results = {}
    for name in names:
        results[name] = measure(name, threads_list, os.path.join(ROOT, args.build), out_dir,
                                args.exports)
        print_table(name, results[name])
        sys.stdout.flush()
    with open(os.path.join(out_dir, "results.json"), "w") as out:
        json.dump(results, out, indent=1)


if __name__ == "__main__":
    main()
