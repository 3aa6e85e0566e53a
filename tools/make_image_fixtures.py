"""Write the small JPEG and PNG fixtures of tests/test_data_sources.c with reference outputs.

Usage: /usr/bin/python3 tools/make_image_fixtures.py [--out tests/fixtures/images]

Images are written with PIL from seeded random pixels. Each case of cases.json names an
image, a preprocessing JSON text, the model input (channels, side) and NAME.f32: the
expected input tensor (little-endian float32, CHW). The reference follows torchvision's
tensor path: decode with PIL, colour conversion with PIL (convert("L") for gray, alpha
dropped or blended), to_tensor (/255), torch.nn.functional.interpolate(mode="bilinear",
align_corners=False, antialias=...) of the shorter side, centre crop with Python's round()
and (x - mean) / std. decoded/NAME.u8 contains PIL's decoded pixels (height x width x
channels) of each file, to check the C decoders.
"""

import argparse
import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image


def write_images(out_dir):
    rng = np.random.default_rng(20261204)
    smooth = np.linspace(0, 255, 40 * 30 * 3).reshape(30, 40, 3)
    noisy = np.clip(smooth + rng.normal(0, 40, smooth.shape), 0, 255).astype(np.uint8)
    images = {
        "rgb_40x30.png": Image.fromarray(noisy, "RGB"),
        "gray_9x13.png": Image.fromarray(rng.integers(0, 256, (13, 9), dtype=np.uint8), "L"),
        "rgba_12x10.png": Image.fromarray(rng.integers(0, 256, (10, 12, 4), dtype=np.uint8),
                                          "RGBA"),
        "palette_8x8.png": Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8),
                                           "RGB").quantize(16),
    }
    for name, image in images.items():
        image.save(os.path.join(out_dir, name))
    Image.fromarray(noisy, "RGB").save(os.path.join(out_dir, "rgb_40x30.jpg"), quality=90)
    Image.fromarray(noisy[:, :, 1], "L").save(os.path.join(out_dir, "gray_40x30.jpg"),
                                              quality=90)


def to_planes(image, pre, channels):
    """PIL image -> float CHW in [0, 1] after the colour steps of the C preprocessing."""
    alpha = pre.get("alpha", "drop")
    background = pre.get("background", [255, 255, 255])
    if isinstance(background, (int, float)):
        background = [background] * 3
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    color = pre.get("color", "gray" if channels == 1 else "rgb")
    if image.mode in ("RGBA", "LA") and alpha == "blend":
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
        if image.mode == "LA":
            rgba = np.asarray(image, dtype=np.float32)
            rgba = np.stack([rgba[..., 0]] * 3 + [rgba[..., 1]], axis=-1)
        a = rgba[..., 3:4] / 255.0
        rgb = rgba[..., :3] * a + np.array(background, dtype=np.float32) * (1.0 - a)
        if color == "gray":
            if image.mode == "LA":
                planes = rgb[..., :1]
            else:
                planes = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2])[..., None]
        else:
            planes = rgb
    else:
        if color == "gray":
            planes = np.asarray(image.convert("L"), dtype=np.float32)[..., None]
        else:
            planes = np.asarray(image.convert("RGB"), dtype=np.float32)
    if color == "bgr":
        planes = planes[..., ::-1]
    return torch.from_numpy(np.ascontiguousarray(planes)).permute(2, 0, 1) / 255.0


def reference(image, pre, channels, side):
    x = to_planes(image, pre, channels)
    _, h, w = x.shape
    size = pre.get("resize", side)
    if size:
        if w <= h:
            new_w, new_h = size, int(size * h / w)
        else:
            new_h, new_w = size, int(size * w / h)
        if (new_h, new_w) != (h, w):
            x = F.interpolate(x[None], size=(new_h, new_w), mode="bilinear",
                              align_corners=False,
                              antialias=pre.get("antialias", False))[0]
    _, h, w = x.shape
    top = int(round((h - side) / 2.0))
    left = int(round((w - side) / 2.0))
    x = x[:, top:top + side, left:left + side]
    mean = torch.tensor(np.broadcast_to(pre.get("mean", 0.0), (channels,)).copy(),
                        dtype=torch.float32)
    std = torch.tensor(np.broadcast_to(pre.get("std", 1.0), (channels,)).copy(),
                       dtype=torch.float32)
    return (x - mean[:, None, None]) / std[:, None, None]


CASES = [
    ("rgb_bilinear", "rgb_40x30.png", 3, 8,
     {"resize": 9, "color": "rgb", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}),
    ("rgb_antialias", "rgb_40x30.png", 3, 8, {"resize": 11, "antialias": True}),
    ("rgb_to_gray", "rgb_40x30.png", 1, 10, {"resize": 12, "mean": 0.5, "std": 0.25}),
    ("bgr_no_resize", "rgb_40x30.png", 3, 7, {"resize": 0, "color": "bgr"}),
    ("gray_upscale", "gray_9x13.png", 1, 12, {"resize": 12}),
    ("gray_to_rgb", "gray_9x13.png", 3, 9, {"resize": 9, "color": "rgb"}),
    ("rgba_drop", "rgba_12x10.png", 3, 6, {"resize": 6, "antialias": True}),
    ("rgba_blend", "rgba_12x10.png", 3, 6,
     {"resize": 7, "alpha": "blend", "background": [0, 128, 255]}),
    ("rgba_blend_gray", "rgba_12x10.png", 1, 6, {"resize": 7, "alpha": "blend", "background": 64}),
    ("palette", "palette_8x8.png", 3, 5, {"resize": 5, "antialias": True}),
    ("jpeg_rgb", "rgb_40x30.jpg", 3, 8, {"resize": 10}),
    ("jpeg_gray", "gray_40x30.jpg", 1, 8, {"resize": 10, "antialias": True}),
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join("tests", "fixtures", "images"))
    args = parser.parse_args()
    os.makedirs(os.path.join(args.out, "decoded"), exist_ok=True)
    write_images(args.out)

    for name in sorted(os.listdir(args.out)):
        if name.endswith((".png", ".jpg")):
            image = Image.open(os.path.join(args.out, name))
            if image.mode == "P":
                image = image.convert("RGBA" if "transparency" in image.info else "RGB")
            np.asarray(image, dtype=np.uint8).tofile(
                os.path.join(args.out, "decoded", name + ".u8"))

    cases = []
    for case, file, channels, side, pre in CASES:
        image = Image.open(os.path.join(args.out, file))
        image.load()
        x = reference(image, pre, channels, side)
        assert x.shape == (channels, side, side), (case, x.shape)
        x.numpy().astype("<f4").tofile(os.path.join(args.out, case + ".f32"))
        cases.append({"name": case, "image": file, "channels": channels, "side": side,
                      "preprocess": pre, "width": image.width, "height": image.height})
    with open(os.path.join(args.out, "cases.json"), "w") as f:
        json.dump({"cases": cases}, f, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {args.out}")


if __name__ == "__main__":
    main()
