"""Write the small random-weight ONNX fixtures the tests use, with inputs and PyTorch outputs.

Usage: python3 tools/make_fixtures.py [--out tests/fixtures]

Each fixture NAME gets NAME.onnx, NAME.input.f32 and NAME.output.f32 (raw little-endian
float32, NCHW, batch 1); fixtures.json lists the shapes. Weights are random but seeded, so
the files are reproducible with the same torch build.
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fashion_mnist import DEFAULT_DIR, load_split  # noqa: E402
from models.dat import DAttentionBaseline, dat_pp_fixture, dat_pp_nano  # noqa: E402
import export_models  # noqa: E402

# Reduced DAT and DAT++ (tools/models/dat_family.py) with every block type of the full
# models: (name, model, input size, opset, dynamic axes, external data, extra input sizes).
FAMILY_FIXTURES = (
    ("dat_mini_64", "dat_mini", (64, 64), 16, "none", False, ()),
    ("dat_mini_72x88_op17", "dat_mini", (72, 88), 17, "none", False, ()),
    ("dat_mini_64_op18", "dat_mini", (64, 64), 18, "none", False, ()),
    ("dat_pp_mini_64", "dat_pp_mini", (64, 64), 16, "none", False, ()),
    ("dat_pp_mini_64x96_op18", "dat_pp_mini", (64, 96), 18, "none", False, ()),
    ("dat_pp_mini_64_op17_external", "dat_pp_mini", (64, 64), 17, "none", True, ()),
    ("dat_pp_mini_64_dynamic", "dat_pp_mini", (64, 64), 16, "all", False, ((64, 96),)),
    ("dat_mini_64_dynamic", "dat_mini", (64, 64), 17, "all", False, ((72, 88),)),
)

BUNDLED_WEIGHTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models",
                               "dat_pp_nano.pt")


def randomize(model, seed):
    """Give every parameter a distinct, non-trivial value so no two initializers coincide."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("rpe_table") or name.endswith("rpb"):
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=generator))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
    return model


def export(model, shape, name, out_dir, opset=16):
    model.eval()
    torch.manual_seed(1234)
    x = torch.randn(*shape)
    with torch.no_grad():
        y = model(x)
    path = os.path.join(out_dir, name + ".onnx")
    torch.onnx.export(model, x, path, opset_version=opset, input_names=["input"],
                      output_names=["output"], do_constant_folding=True)
    x.numpy().astype("<f4").tofile(os.path.join(out_dir, name + ".input.f32"))
    y.numpy().astype("<f4").tofile(os.path.join(out_dir, name + ".output.f32"))
    return {"name": name, "input": list(x.shape), "output": list(y.shape), "opset": opset}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tests/fixtures")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)

    entries = []
    entries.append(export(randomize(DAttentionBaseline((8, 8), 2, 4, 2, 2, 3, "dat_pp"), 1),
                          (1, 8, 8, 8), "deform_layer_dat_pp", args.out))
    entries.append(export(randomize(DAttentionBaseline((8, 8), 2, 4, 2, 2, 3, "dat"), 2),
                          (1, 8, 8, 8), "deform_layer_dat", args.out))
    entries.append(export(randomize(DAttentionBaseline((6, 10), 4, 4, 2, 1, 3, "dat_pp"), 3),
                          (1, 16, 6, 10), "deform_layer_rect", args.out))
    entries.append(export(randomize(dat_pp_fixture("dat_pp"), 4), (1, 1, 16, 16),
                          "dat_pp_tiny", args.out))
    entries.append(export(randomize(dat_pp_fixture("dat"), 5), (1, 1, 16, 16),
                          "dat_offsets_tiny", args.out))

    # A DAT block as the 2022 code computes its position bias: queries at pixel centres
    # normalised by H and W (the blocks above use DAT++'s pixel corners for both conventions).
    layer = DAttentionBaseline((8, 8), 2, 4, 2, 1, 5, "dat", q_grid="centre",
                               grid_from_arange=True)
    entry = export(randomize(layer, 6), (1, 8, 8, 8), "deform_layer_dat_centre", args.out)
    entry.update({"convention": "dat", "q_grid": "centre"})
    entries.append(entry)

    # Odd sizes for the packed int8 products of the fixed-point kernel. Head channels are not
    # a multiple of 4, channel and sample counts not multiples of 16, the query pixels exceed
    # one block of the packed attention, and the offset grid is strided.
    entries.append(export(randomize(DAttentionBaseline((9, 11), 6, 3, 3, 1, 3, "dat"), 7),
                          (1, 18, 9, 11), "deform_layer_odd", args.out))
    entries.append(export(randomize(DAttentionBaseline((10, 7), 5, 5, 5, 2, 3, "dat_pp"), 8),
                          (1, 25, 10, 7), "deform_layer_odd_pp", args.out))

    for i, (name, model, size, opset, dynamic, external, extra) in enumerate(FAMILY_FIXTURES):
        meta = export_models.export(model, size, opset, dynamic, external, num_classes=10,
                                    seed=100 + 10 * i, out_dir=args.out, name=name, quiet=True,
                                    write_meta=False, extra_sizes=extra)
        entry = {"name": name, "input": meta["input"], "output": meta["output"], "opset": opset,
                 "model": model, "convention": "dat_pp" if model.startswith("dat_pp") else "dat",
                 "deform_blocks": meta["deform_blocks"], "dynamic": dynamic}
        if external:
            entry["external_data"] = name + ".onnx.data"
        if extra:
            entry["extra_inputs"] = meta["extra_inputs"]
        entries.append(entry)

    # The first three test images as the training script loads them (resized to 32x32), so
    # the C data loader can be checked against PyTorch's resize.
    if os.path.isdir(DEFAULT_DIR):
        images, _ = load_split("test", DEFAULT_DIR, 32)
        images[:3].numpy().astype("<f4").tofile(os.path.join(args.out, "fashion_test3_32.f32"))

    # The bundled model's PyTorch logits on those images, so the runtime can be checked
    # against the trained weights too (the ONNX file itself ships in models/).
    if os.path.isdir(DEFAULT_DIR) and os.path.exists(BUNDLED_WEIGHTS):
        model = dat_pp_nano(32)
        model.load_state_dict(torch.load(BUNDLED_WEIGHTS))
        model.eval()
        with torch.no_grad():
            logits = model(images[:3])
        logits.numpy().astype("<f4").tofile(os.path.join(args.out, "dat_pp_nano_test3.output.f32"))
        entries.append({"name": "dat_pp_nano_test3", "model": "models/dat_pp_nano.onnx",
                        "input": "fashion_test3_32.f32", "output": list(logits.shape)})

    with open(os.path.join(args.out, "fixtures.json"), "w") as f:
        json.dump({"torch": torch.__version__, "fixtures": entries}, f, indent=2)
        f.write("\n")
    for e in entries:
        print(e)


if __name__ == "__main__":
    main()
