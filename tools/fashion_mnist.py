"""Fashion-MNIST from gzip IDX files, as torch tensors resized to the model's input size."""

import gzip
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"

# The training images after this index form the validation split. The C tools use the same
# split, so it must not change without changing theirs.
VALIDATION_START = 55000


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    rank = magic & 0xFF
    dims = struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank])
    array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank)
    return array.reshape(dims)


def load_split(split, data_dir=DEFAULT_DIR, size=32):
    """Return (images float32 N x 1 x size x size in [0, 1], labels int64)."""
    prefix = "train" if split in ("train", "val", "train_full") else "t10k"
    images = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
    if split == "train":
        images, labels = images[:VALIDATION_START], labels[:VALIDATION_START]
    elif split == "val":
        images, labels = images[VALIDATION_START:], labels[VALIDATION_START:]
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    if size != 28:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x, torch.from_numpy(labels.astype(np.int64))
