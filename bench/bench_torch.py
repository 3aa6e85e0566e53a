#!/usr/bin/python3
"""Time PyTorch (float32, CPU) inference of a DAT model at batch 1.

The model comes from tools/models: dat_pp_nano (the bundled model's architecture, 1x32x32
input) or any name of dat_family.CONFIGS (dat_t, dat_pp_t, ...) at --size. Weights are
PyTorch's random initialisation, which does not change the time of dense kernels. Prints one
JSON line with images per second and the process's peak resident memory (VmHWM from
/proc/self/status, which includes the Python interpreter and libtorch).

Usage: /usr/bin/python3 bench/bench_torch.py MODEL [--size 224|HxW] [--threads N]
                                             [--iterations N] [--warmup N]
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
from models import dat  # noqa: E402
from models import dat_family  # noqa: E402


def parse_size(text):
    parts = text.lower().split("x")
    if len(parts) == 1:
        parts = parts * 2
    try:
        height, width = (int(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected SIDE or HEIGHTxWIDTH")
    return height, width


def peak_rss_bytes():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def build(name, size):
    """Model and input shape for name at size (height, width)."""
    if name == "dat_pp_nano":
        return dat.dat_pp_nano(img_size=size[0]), (1, 1, size[0], size[1])
    if name not in dat_family.CONFIGS:
        raise SystemExit(f"bench_torch: unknown model {name!r}: use dat_pp_nano or one of "
                         f"{', '.join(sorted(dat_family.CONFIGS))}")
    model = dat_family.build(name, img_size=size if size[0] != size[1] else size[0])
    return model, (1, 3, size[0], size[1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("--size", type=parse_size, default=None,
                        help="input side or HEIGHTxWIDTH (default 32 for dat_pp_nano, else 224)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    size = args.size or ((32, 32) if args.model == "dat_pp_nano" else (224, 224))

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model, shape = build(args.model, size)
    model.eval()
    x = torch.rand(shape) * 2 - 1
    with torch.inference_mode():
        for _ in range(args.warmup):
            model(x)
        start = time.perf_counter()
        for _ in range(args.iterations):
            model(x)
        seconds = time.perf_counter() - start
    print(json.dumps({
        "runtime": "pytorch", "version": torch.__version__, "model": args.model,
        "threads": args.threads, "iterations": args.iterations, "input_shape": list(shape),
        "ms_per_image": 1e3 * seconds / args.iterations,
        "images_per_second": args.iterations / seconds,
        "peak_rss_bytes": peak_rss_bytes()}))


if __name__ == "__main__":
    main()
