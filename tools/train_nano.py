"""Train dat_pp_nano on Fashion-MNIST and export it to ONNX at opset 16.

Usage: python3 tools/train_nano.py --epochs 8 --out models/dat_pp_nano.onnx

The last 5,000 training images are held out for validation; the test set is used once, at the
end, for the reported accuracy. A checkpoint is written after every epoch, and a rerun with the
same --work folder resumes from it.
"""

import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fashion_mnist import DEFAULT_DIR, load_split  # noqa: E402
from models.dat import count_parameters, dat_pp_nano  # noqa: E402


def evaluate(model, x, y, batch=500):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return 100.0 * correct / len(x)


def export_onnx(model, size, path, opset=16):
    model.eval()
    dummy = torch.zeros(1, 1, size, size)
    tmp = path + ".tmp"
    torch.onnx.export(model, dummy, tmp, opset_version=opset, input_names=["input"],
                      output_names=["logits"], do_constant_folding=True)
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=DEFAULT_DIR, help="folder with the four gzip IDX files")
    parser.add_argument("--size", type=int, default=32, choices=(32, 64), help="input side in pixels")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="build/train", help="checkpoint folder")
    parser.add_argument("--out", default="models/dat_pp_nano.onnx")
    parser.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (timing)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    os.makedirs(args.work, exist_ok=True)

    x_train, y_train = load_split("train", args.data, args.size)
    x_val, y_val = load_split("val", args.data, args.size)
    model = dat_pp_nano(args.size)
    print(f"dat_pp_nano: {count_parameters(model)} parameters, input {args.size}x{args.size}", flush=True)

    steps_per_epoch = math.ceil(len(x_train) / args.batch)
    total_steps = steps_per_epoch * args.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    warmup = steps_per_epoch // 2

    def lr_at(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total_steps - warmup)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)

    checkpoint = os.path.join(args.work, "checkpoint.pt")
    first_epoch = 0
    elapsed_s = 0.0
    if os.path.exists(checkpoint):
        state = torch.load(checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        first_epoch = state["epoch"]
        elapsed_s = state["elapsed_s"]
        print(f"resumed after epoch {first_epoch}", flush=True)

    generator = torch.Generator().manual_seed(args.seed)
    for epoch in range(first_epoch, args.epochs):
        model.train()
        start = time.time()
        order = torch.randperm(len(x_train), generator=generator)
        running = 0.0
        for step in range(steps_per_epoch):
            index = order[step * args.batch:(step + 1) * args.batch]
            loss = F.cross_entropy(model(x_train[index]), y_train[index], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            running += loss.item()
            if step % 50 == 49:
                print(f"epoch {epoch + 1} step {step + 1}/{steps_per_epoch} loss {running / 50:.4f} "
                      f"{(time.time() - start) / (step + 1):.3f} s/step", flush=True)
                running = 0.0
            if args.max_steps and step + 1 >= args.max_steps:
                return
        elapsed_s += time.time() - start
        val = evaluate(model, x_val, y_val)
        print(f"epoch {epoch + 1}: validation top-1 {val:.2f}% ({elapsed_s / 60:.1f} min so far)", flush=True)
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "epoch": epoch + 1,
                    "elapsed_s": elapsed_s}, checkpoint + ".tmp")
        os.replace(checkpoint + ".tmp", checkpoint)

    x_test, y_test = load_split("test", args.data, args.size)
    test = evaluate(model, x_test, y_test)
    val = evaluate(model, x_val, y_val)
    print(f"test top-1 {test:.2f}%, validation top-1 {val:.2f}%, training {elapsed_s / 60:.1f} min", flush=True)

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    export_onnx(model, args.size, args.out)
    torch.save(model.state_dict(), os.path.splitext(args.out)[0] + ".pt")
    report = {"model": "dat_pp_nano", "input": [1, 1, args.size, args.size], "opset": 16,
              "parameters": count_parameters(model), "epochs": args.epochs,
              "test_top1_percent": round(test, 2), "validation_top1_percent": round(val, 2),
              "training_minutes": round(elapsed_s / 60, 1), "threads": args.threads,
              "torch": torch.__version__}
    with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
        json.dump(report, f, indent=2)
        f.write("\n")
    print(json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
