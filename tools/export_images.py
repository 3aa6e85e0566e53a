"""Write Fashion-MNIST images as ImageNet-style folders of PNG and JPEG files.

Usage: /usr/bin/python3 tools/export_images.py --out /work/exports/fashion_images
           [--test 2000] [--train 500] [--data /usr/share/datasets/fashion-mnist]

Writes OUT/png/{train,test}/C_NAME/NNNNN.png and the same tree under OUT/jpeg with .jpg files
(quality 95), where C is the label digit (so the sorted folder names give labels 0..9) and
NNNNN the image's index in its IDX file. The images stay 28x28 grayscale, as in the IDX
files, and PNG keeps every pixel. OUT/preprocess.json contains the settings that reproduce the
IDX loader's input: resize the 28x28 image to 32x32 (bilinear, no antialiasing), gray.
"""

import argparse
import gzip
import json
import os

import numpy as np
from PIL import Image

CLASSES = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
           "bag", "boot"]


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def export(images, labels, count, root, split):
    for label, name in enumerate(CLASSES):
        for kind in ("png", "jpeg"):
            os.makedirs(os.path.join(root, kind, split, f"{label}_{name}"), exist_ok=True)
    for i in range(count):
        folder = f"{labels[i]}_{CLASSES[labels[i]]}"
        image = Image.fromarray(images[i], "L")
        image.save(os.path.join(root, "png", split, folder, f"{i:05d}.png"))
        image.save(os.path.join(root, "jpeg", split, folder, f"{i:05d}.jpg"), quality=95)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--train", type=int, default=500)
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    args = parser.parse_args()

    for split, prefix, count in (("test", "t10k", args.test), ("train", "train", args.train)):
        images = read_idx(os.path.join(args.data, f"{prefix}-images-idx3-ubyte.gz"))
        labels = read_idx(os.path.join(args.data, f"{prefix}-labels-idx1-ubyte.gz"))
        export(images, labels, min(count, len(labels)), args.out, split)
    with open(os.path.join(args.out, "preprocess.json"), "w") as f:
        json.dump({"resize": 32, "antialias": False, "color": "gray"}, f)
        f.write("\n")
    print(f"wrote {args.test} test and {args.train} training images under {args.out}")


if __name__ == "__main__":
    main()
