"""Export DAT or DAT++ (tiny, small, base, or a reduced variant) to ONNX with a reference output.

Usage:
  python3 tools/export_models.py --model dat_pp_t --size 224 [--opset 16]
      [--dynamic none|batch|spatial|all] [--external-data] [--checkpoint FILE.pth]
      [--classes 1000] [--seed 0] [--out /work/exports] [--name NAME]

Writes OUT/NAME.onnx (NAME defaults to MODEL_SIZE_opOPSET, e.g. dat_pp_t_224_op16), with
NAME.input.f32 and NAME.output.f32 (raw little-endian float32, NCHW input of batch 1 and
the logits PyTorch computes for it), and NAME.json (model, input and output shapes, opset,
parameter count, node count and op histogram). --external-data stores the weights in
NAME.onnx.data next to the graph. Without --checkpoint the weights are random: PyTorch's
initialisation under --seed, then every norm weight, bias and bias table perturbed (also
seeded), so no two initializers coincide and no bias is trivially zero.

A checkpoint is a state_dict of the reference implementation (optionally under a "model"
key); its deformable bias tables are resized bicubically when the export size differs from
the size it was trained at.

--size is SIDE or HEIGHTxWIDTH. --list prints the models with their parameter counts.
"""

import argparse
import collections
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import local_attention  # noqa: E402
from models.dat import DAttentionBaseline  # noqa: E402
from models.dat_family import (CONFIGS, TARGET_PARAMS, build, count_parameters,  # noqa: E402
                               resize_rpe_tables)


def parse_size(text):
    parts = text.lower().split("x")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        dims = []
    if len(dims) == 1:
        dims = dims * 2
    if len(dims) != 2 or min(dims) < 16:
        raise argparse.ArgumentTypeError(
            f"size {text!r}: expected SIDE or HEIGHTxWIDTH with sides of at least 16, e.g. "
            f"224 or 800x1333")
    return tuple(dims)


def size_text(size):
    return str(size[0]) if size[0] == size[1] else f"{size[0]}x{size[1]}"


def perturb(model, seed):
    """Give norms, biases and bias tables seeded non-trivial values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("rpe_table", "rpb", "relative_position_bias_table")):
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=generator))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
    return model


def load_checkpoint(model, path):
    state = torch.load(path, map_location="cpu")
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    state = resize_rpe_tables(state, model)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("relative_position_index")]
    if missing or unexpected:
        raise SystemExit(f"{path}: the checkpoint does not match the model: missing "
                         f"{missing[:5]}{'...' if len(missing) > 5 else ''}, unexpected "
                         f"{unexpected[:5]}{'...' if len(unexpected) > 5 else ''}")


def op_histogram(onnx_model):
    counts = collections.Counter(n.op_type for n in onnx_model.graph.node)
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


REDUCE_OPS = ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
              "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")


def upgrade_to_opset18(onnx_model):
    """Rewrite an opset 17 graph as opset 18, the way newer exporters write it.

    torch 1.13 exports up to opset 17. From 17 to 18 only the Reduce* ops other than
    ReduceSum change for what these models use: their axes move from an attribute to a
    second input. Every other op of the graph keeps its meaning.
    """
    from onnx import helper, numpy_helper
    import numpy as np

    nodes = []
    for node in onnx_model.graph.node:
        if node.op_type in REDUCE_OPS:
            axes = [a for a in node.attribute if a.name == "axes"]
            if axes:
                name = (node.name or node.output[0]) + "_axes"
                value = numpy_helper.from_array(np.array(list(axes[0].ints), np.int64), name)
                nodes.append(helper.make_node("Constant", [], [name], name=name, value=value))
                node.attribute.remove(axes[0])
                node.input.append(name)
        nodes.append(node)
    del onnx_model.graph.node[:]
    onnx_model.graph.node.extend(nodes)
    for opset in onnx_model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = 18
    return onnx_model


def dynamic_axes(kind):
    axes = {"none": {}, "batch": {0: "batch"}, "spatial": {2: "height", 3: "width"},
            "all": {0: "batch", 2: "height", 3: "width"}}[kind]
    if not axes:
        return None
    return {"input": axes, "output": {0: "batch"} if 0 in axes else {}}


def export(model_name, size, opset=16, dynamic="none", external_data=False, checkpoint=None,
           num_classes=1000, in_chans=3, seed=0, out_dir="/work/exports", name=None,
           quiet=False, write_meta=True, extra_sizes=()):
    """Export one model; returns the metadata dictionary it also writes as NAME.json.

    extra_sizes: more (height, width) inputs for a dynamic export, each written as
    NAME.HxW.input.f32 and NAME.HxW.output.f32 with the same weights.
    """
    import onnx

    name = name or f"{model_name}_{size_text(size)}_op{opset}"
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(seed)
    model = build(model_name, size, num_classes, in_chans)
    if checkpoint:
        load_checkpoint(model, checkpoint)
    else:
        perturb(model, seed + 1)
    model.eval()
    x = torch.randn(1, in_chans, *size, generator=torch.Generator().manual_seed(seed + 2))
    start = time.time()
    with torch.no_grad():
        y = model(x)
    torch_s = time.time() - start

    path = os.path.join(out_dir, name + ".onnx")
    start = time.time()
    # With dynamic spatial axes, masks and neighbour indices must follow the input shape.
    local_attention.TRACE_INDICES = dynamic in ("spatial", "all")
    try:
        torch.onnx.export(model, x, path, opset_version=min(opset, 17), input_names=["input"],
                          output_names=["output"], dynamic_axes=dynamic_axes(dynamic),
                          do_constant_folding=True)
    finally:
        local_attention.TRACE_INDICES = False
    export_s = time.time() - start
    graph = onnx.load(path)
    if opset == 18:
        graph = upgrade_to_opset18(graph)
        onnx.save_model(graph, path)
    if external_data:
        data_name = name + ".onnx.data"
        if os.path.exists(os.path.join(out_dir, data_name)):
            os.remove(os.path.join(out_dir, data_name))
        onnx.save_model(graph, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
    x.numpy().astype("<f4").tofile(os.path.join(out_dir, name + ".input.f32"))
    y.numpy().astype("<f4").tofile(os.path.join(out_dir, name + ".output.f32"))
    extra = []
    for i, extra_size in enumerate(extra_sizes):
        x2 = torch.randn(1, in_chans, *extra_size,
                         generator=torch.Generator().manual_seed(seed + 3 + i))
        with torch.no_grad():
            y2 = model(x2)
        stem = f"{name}.{extra_size[0]}x{extra_size[1]}"
        x2.numpy().astype("<f4").tofile(os.path.join(out_dir, stem + ".input.f32"))
        y2.numpy().astype("<f4").tofile(os.path.join(out_dir, stem + ".output.f32"))
        extra.append({"input": list(x2.shape), "output": list(y2.shape),
                      "files": stem + ".input.f32 / .output.f32"})
    meta = {
        "name": name, "model": model_name, "input": list(x.shape), "output": list(y.shape),
        "opset": opset, "dynamic": dynamic, "external_data": external_data,
        "checkpoint": checkpoint, "seed": seed, "parameters": count_parameters(model),
        "map_sizes": [list(s) for s in model.map_sizes],
        "deform_blocks": sum(isinstance(m, DAttentionBaseline) for m in model.modules()),
        "extra_inputs": extra, "nodes": len(graph.graph.node),
        "initializers": len(graph.graph.initializer), "ops": op_histogram(graph),
        "torch": torch.__version__, "torch_forward_s": round(torch_s, 3),
        "export_s": round(export_s, 3),
    }
    if write_meta:
        with open(os.path.join(out_dir, name + ".json"), "w") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
    if not quiet:
        print(f"{path}: {meta['nodes']} nodes, {meta['parameters']} parameters, output "
              f"{tuple(y.shape)}, export {export_s:.1f} s")
    return meta


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(CONFIGS), default="dat_pp_t")
    parser.add_argument("--size", type=parse_size, default=(224, 224))
    parser.add_argument("--opset", type=int, choices=(16, 17, 18), default=16)
    parser.add_argument("--dynamic", choices=("none", "batch", "spatial", "all"), default="none")
    parser.add_argument("--external-data", action="store_true")
    parser.add_argument("--checkpoint")
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/work/exports")
    parser.add_argument("--name")
    parser.add_argument("--list", action="store_true")
    args = parser.parse_args()
    if args.list:
        for key in CONFIGS:
            target = TARGET_PARAMS.get(key)
            count = count_parameters(build(key, 224, 1000))
            print(f"{key:12s} {count:>11,d}" + (f"  (published {target / 1e6:.2f}M)" if target else ""))
        return
    export(args.model, args.size, args.opset, args.dynamic, args.external_data, args.checkpoint,
           args.classes, 3, args.seed, args.out, args.name)


if __name__ == "__main__":
    main()
