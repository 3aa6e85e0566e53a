"""Write the small hand-made ONNX files the converter tests use.

Usage: /usr/bin/python3 tools/make_bad_onnx.py [--out tests/fixtures]

Into OUT/bad/, models the importer must reject with a clear error:
  opset99.onnx        default-domain opset 99 (supported: 13..21)
  ir_version2.onnx    IR version 2 (the importer needs 3 or newer)
  unsupported_op.onnx MaxPool (twice) and HardSwish, which map onto no runtime op
  renamed_sqrt.onnx   a LayerNorm whose Sqrt is renamed FancyOp, so it cannot fuse
  global_max_pool.onnx  Conv, GlobalMaxPool, Flatten, Gemm
  bad_raw_size.onnx   a (4, 4) float initializer with 12 bytes of raw_data
  bad_typed_size.onnx a (2, 3) float initializer with 5 values in float_data
  dangling_input.onnx a node input that no node, initializer or graph input defines
  dynamic_input.onnx  input shape (batch, 4): needs an explicit input shape
  not_onnx.txt        a text file
  empty.onnx          zero bytes

Into OUT/ops/, small valid models for ops the DAT fixtures do not contain:
  layer_normalization.onnx  opset 17 LayerNormalization without bias
  gelu_orders.onnx          three exact GELUs in the operand orders PyTorch emits
  einsum_outside.onnx       the two DAT Einsum equations outside a deformable block
  shape_arithmetic.onnx     Shape, Gather, Slice, Range, Concat and Reshape that all fold
  gather_negative.onnx      one negative index constant shared by Gathers over axes of sizes 3
                            and 2
  deform_renamed_norm.onnx  deform_layer_dat_pp.onnx with the offset LayerNorm weight renamed
                            to an exporter-style name, as when torch deduplicates initializers
  deform_identity_norm.onnx deform_layer_dat_pp.onnx with that weight read through an Identity
                            of another initializer, the other form deduplication takes
  deform_opset18.onnx       deform_layer_dat_pp.onnx at opset 18, where ReduceMean takes its
                            axes as an input instead of an attribute
  deform_opset17.onnx       deform_layer_dat.onnx at opset 17, its decomposed offset LayerNorm
                            replaced by one LayerNormalization node as opset 17 exports emit it
  deform_dynamic_batch.onnx a DAT deformable layer exported by torch with a dynamic batch dim,
                            so its shapes are computed by Shape, Gather, Range and Cast nodes;
                            with .input.f32 and .output.f32 (PyTorch's output), written only
                            when torch can be imported

Besides these, tools/onnx_op_cases.py writes op-level models with numpy references into
OUT/ops/ and more bad models into OUT/bad/; its docstring lists them.

Needs the onnx package (1.12 in Debian) and tests/fixtures/deform_layer_dat_pp.onnx, and torch
(1.13) for deform_dynamic_batch. The files are deterministic for the same torch build.
"""

import argparse
import os

import numpy as np
import onnx
import onnx_op_cases
from onnx import TensorProto, helper, numpy_helper


def model(nodes, inputs, outputs, initializers=(), opset=16, ir_version=8):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir_version
    return m


def tensor_info(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def relu_model(opset=16, ir_version=8):
    return model([helper.make_node("Relu", ["x"], ["y"], name="relu")],
                 [tensor_info("x", [1, 4])], [tensor_info("y", [1, 4])],
                 opset=opset, ir_version=ir_version)


def unsupported_model():
    w = const("w", np.full((2, 2, 1, 1), 0.5, np.float32))
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv_1"),
        helper.make_node("MaxPool", ["c"], ["p1"], name="pool_1", kernel_shape=[2, 2]),
        helper.make_node("HardSwish", ["p1"], ["h"], name="act_1"),
        helper.make_node("MaxPool", ["h"], ["y"], name="pool_2", kernel_shape=[2, 2]),
    ]
    return model(nodes, [tensor_info("x", [1, 2, 8, 8])], [tensor_info("y", [1, 2, 2, 2])], [w])


def renamed_sqrt_model():
    """A decomposed LayerNorm with its Sqrt renamed to an op type nobody knows, then a
    Transpose: the pattern cannot fuse, so its other nodes fail with it."""
    eps = const("eps", np.array(1e-5, np.float32))
    two = const("two", np.array(2.0, np.float32))
    gamma = const("gamma", np.full((8,), 1.5, np.float32))
    beta = const("beta", np.full((8,), 0.25, np.float32))
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["mean"], name="norm_mean", axes=[-1]),
        helper.make_node("Sub", ["x", "mean"], ["centred"], name="norm_sub"),
        helper.make_node("Pow", ["centred", "two"], ["square"], name="norm_pow"),
        helper.make_node("ReduceMean", ["square"], ["var"], name="norm_var", axes=[-1]),
        helper.make_node("Add", ["var", "eps"], ["var_eps"], name="norm_add_eps"),
        helper.make_node("FancyOp", ["var_eps"], ["std"], name="norm_sqrt"),
        helper.make_node("Div", ["centred", "std"], ["normed"], name="norm_div"),
        helper.make_node("Mul", ["normed", "gamma"], ["scaled"], name="norm_mul"),
        helper.make_node("Add", ["scaled", "beta"], ["shifted"], name="norm_add"),
        helper.make_node("Transpose", ["shifted"], ["y"], name="transpose", perm=[0, 2, 1]),
    ]
    return model(nodes, [tensor_info("x", [1, 4, 8])], [tensor_info("y", [1, 8, 4])],
                 [eps, two, gamma, beta])


def global_max_pool_model():
    """Conv, GlobalMaxPool, Flatten, Gemm: only the pool is unsupported."""
    w = const("w", np.full((4, 2, 1, 1), 0.5, np.float32))
    fc = const("fc", np.full((3, 4), 0.25, np.float32))
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv_1"),
        helper.make_node("GlobalMaxPool", ["c"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc"], ["y"], name="head", transB=1),
    ]
    return model(nodes, [tensor_info("x", [1, 2, 8, 8])], [tensor_info("y", [1, 3])], [w, fc])


def bad_raw_size_model():
    w = const("weights.bad", np.ones((4, 4), np.float32))
    w.raw_data = w.raw_data[:12]
    return model([helper.make_node("Add", ["x", "weights.bad"], ["y"], name="add")],
                 [tensor_info("x", [4, 4])], [tensor_info("y", [4, 4])], [w])


def bad_typed_size_model():
    w = helper.make_tensor("weights.short", TensorProto.FLOAT, [2, 3], [1.0] * 6)
    del w.float_data[5:]
    return model([helper.make_node("Add", ["x", "weights.short"], ["y"], name="add")],
                 [tensor_info("x", [2, 3])], [tensor_info("y", [2, 3])], [w])


def dangling_model():
    return model([helper.make_node("Add", ["x", "missing_tensor"], ["y"], name="add")],
                 [tensor_info("x", [1, 4])], [tensor_info("y", [1, 4])])


def dynamic_model():
    b = const("b", np.arange(4, dtype=np.float32))
    return model([helper.make_node("Add", ["x", "b"], ["y"], name="add")],
                 [tensor_info("x", ["batch", 4])], [tensor_info("y", ["batch", 4])], [b])


def layer_normalization_model():
    scale = const("ln.weight", np.linspace(0.5, 1.5, 6).astype(np.float32))
    node = helper.make_node("LayerNormalization", ["x", "ln.weight"], ["y"], name="ln",
                            axis=-1, epsilon=1e-5)
    return model([node], [tensor_info("x", [1, 3, 6])], [tensor_info("y", [1, 3, 6])],
                 [scale], opset=17)


def gelu_nodes(tag, x, order):
    """Exact GELU of x in one of the three operand orders; returns nodes and output name."""
    c = lambda name, v: helper.make_node(  # noqa: E731
        "Constant", [], [name], name=name, value=numpy_helper.from_array(np.array(v, np.float32)))
    n = [c(f"{tag}_sqrt2", 1.4142135381698608), c(f"{tag}_one", 1.0), c(f"{tag}_half", 0.5),
         helper.make_node("Div", [x, f"{tag}_sqrt2"], [f"{tag}_d"], name=f"{tag}_div"),
         helper.make_node("Erf", [f"{tag}_d"], [f"{tag}_e"], name=f"{tag}_erf"),
         helper.make_node("Add", [f"{tag}_one", f"{tag}_e"], [f"{tag}_a"], name=f"{tag}_add")]
    out = f"{tag}_y"
    if order == 0:  # Mul(Mul(x, A), 0.5)
        n += [helper.make_node("Mul", [x, f"{tag}_a"], [f"{tag}_m"], name=f"{tag}_mul"),
              helper.make_node("Mul", [f"{tag}_m", f"{tag}_half"], [out], name=f"{tag}_mul2")]
    elif order == 1:  # Mul(Mul(x, 0.5), A)
        n += [helper.make_node("Mul", [f"{tag}_half", x], [f"{tag}_m"], name=f"{tag}_mul"),
              helper.make_node("Mul", [f"{tag}_m", f"{tag}_a"], [out], name=f"{tag}_mul2")]
    else:  # Mul(x, Mul(A, 0.5))
        n += [helper.make_node("Mul", [f"{tag}_a", f"{tag}_half"], [f"{tag}_m"], name=f"{tag}_mul"),
              helper.make_node("Mul", [f"{tag}_m", x], [out], name=f"{tag}_mul2")]
    return n, out


def gelu_model():
    nodes, x = [], "x"
    for order in range(3):
        more, x = gelu_nodes(f"g{order}", x, order)
        nodes += more
    nodes.append(helper.make_node("Identity", [x], ["y"], name="out"))
    return model(nodes, [tensor_info("x", [1, 8])], [tensor_info("y", [1, 8])])


def einsum_model():
    nodes = [
        helper.make_node("Einsum", ["q", "k"], ["attn"], name="qk", equation="b c m, b c n -> b m n"),
        helper.make_node("Einsum", ["attn", "k"], ["y"], name="av", equation="b m n, b c n -> b c m"),
    ]
    k = const("k", np.linspace(-1.0, 1.0, 2 * 3 * 5).reshape(2, 3, 5).astype(np.float32))
    return model(nodes, [tensor_info("q", [2, 3, 4])], [tensor_info("y", [2, 3, 4])], [k])


def shape_model():
    """Reshape x (1, 2, 3, 2) to (N, H * W, 2) with every dim computed from Shape(x)."""
    def i64(name, v):
        return helper.make_node("Constant", [], [name], name=name,
                                value=numpy_helper.from_array(np.array(v, np.int64)))

    nodes = [
        i64("zero", 0), i64("one", 1), i64("axes", [0]), i64("starts", [1]), i64("ends", [3]),
        i64("r0", 2), i64("r1", 3), i64("r2", 1),
        helper.make_node("Shape", ["x"], ["s"], name="shape"),
        helper.make_node("Gather", ["s", "zero"], ["n"], name="gather_n"),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"], name="unsqueeze_n"),
        helper.make_node("Slice", ["s", "starts", "ends"], ["hw"], name="slice_hw"),
        helper.make_node("Gather", ["hw", "zero"], ["h0"], name="gather_h"),
        helper.make_node("Gather", ["hw", "one"], ["w0"], name="gather_w"),
        helper.make_node("Unsqueeze", ["h0", "axes"], ["h"], name="unsqueeze_h"),
        helper.make_node("Unsqueeze", ["w0", "axes"], ["w"], name="unsqueeze_w"),
        helper.make_node("Mul", ["h", "w"], ["p"], name="mul_hw"),
        helper.make_node("Range", ["r0", "r1", "r2"], ["tail"], name="range"),
        helper.make_node("Concat", ["n1", "p", "tail"], ["target"], name="concat", axis=0),
        helper.make_node("Reshape", ["x", "target"], ["r"], name="reshape"),
        helper.make_node("Cast", ["r"], ["y"], name="cast", to=TensorProto.FLOAT),
    ]
    return model(nodes, [tensor_info("x", [1, 2, 3, 2])], [tensor_info("y", [1, 6, 2])])


def gather_negative_model():
    index = const("index", np.array([-1, 0], np.int64))
    nodes = [helper.make_node("Gather", ["x", "index"], ["columns"], name="gather_1", axis=1),
             helper.make_node("Gather", ["columns", "index"], ["y"], name="gather_0", axis=0)]
    return model(nodes, [tensor_info("x", [2, 3])], [tensor_info("y", [2, 2])], [index])


def rename_input(graph, old, new):
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new


def deform_renamed_norm(source):
    m = onnx.load(source)
    for init in m.graph.initializer:
        if init.name == "conv_offset.1.norm.weight":
            init.name = "onnx::Mul_901"
    rename_input(m.graph, "conv_offset.1.norm.weight", "onnx::Mul_901")
    return m


def deform_identity_norm(source):
    m = onnx.load(source)
    for init in m.graph.initializer:
        if init.name == "conv_offset.1.norm.weight":
            init.name = "shared.norm.weight"
    identity = helper.make_node("Identity", ["shared.norm.weight"],
                                ["conv_offset.1.norm.weight"], name="Identity_0")
    m.graph.node.insert(0, identity)
    return m


def deform_opset17(source):
    m = onnx.load(source)
    scope = "/conv_offset/conv_offset.1/norm/"
    kept = [n for n in m.graph.node if not n.name.startswith(scope)]
    first = next(i for i, n in enumerate(m.graph.node) if n.name.startswith(scope))
    layer_norm = helper.make_node(
        "LayerNormalization",
        ["/conv_offset/conv_offset.1/Transpose_output_0", "conv_offset.1.norm.weight",
         "conv_offset.1.norm.bias"],
        [scope + "Add_1_output_0"], name=scope + "LayerNormalization", axis=-1, epsilon=1e-5)
    del m.graph.node[:]
    m.graph.node.extend(kept[:first] + [layer_norm] + kept[first:])
    m.opset_import[0].version = 17
    return m


def deform_opset18(source):
    m = onnx.load(source)
    nodes = []
    for n in m.graph.node:
        if n.op_type == "ReduceMean":
            axes = next(a for a in n.attribute if a.name == "axes")
            name = n.name + "_axes"
            nodes.append(helper.make_node("Constant", [], [name], name=name,
                                          value=numpy_helper.from_array(
                                              np.array(list(axes.ints), np.int64))))
            n.attribute.remove(axes)
            n.input.append(name)
        nodes.append(n)
    del m.graph.node[:]
    m.graph.node.extend(nodes)
    m.opset_import[0].version = 18
    return m


def write_dynamic_batch(ops):
    try:
        import torch
    except ImportError:
        print("torch not found: deform_dynamic_batch.onnx not written")
        return
    import sys
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from make_fixtures import randomize
    from models.dat import DAttentionBaseline

    torch.manual_seed(7)
    layer = randomize(DAttentionBaseline((8, 8), 2, 4, 2, 2, 3, "dat"), 7).eval()
    x = torch.randn(1, 8, 8, 8)
    with torch.no_grad():
        y = layer(x)
    base = os.path.join(ops, "deform_dynamic_batch")
    torch.onnx.export(layer, x, base + ".onnx", opset_version=16, input_names=["input"],
                      output_names=["output"],
                      dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    x.numpy().astype("<f4").tofile(base + ".input.f32")
    y.numpy().astype("<f4").tofile(base + ".output.f32")
    print(base + ".onnx")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="tests/fixtures")
    args = parser.parse_args()
    bad = os.path.join(args.out, "bad")
    ops = os.path.join(args.out, "ops")
    os.makedirs(bad, exist_ok=True)
    os.makedirs(ops, exist_ok=True)
    source = os.path.join(args.out, "deform_layer_dat_pp.onnx")

    files = {
        os.path.join(bad, "opset99.onnx"): relu_model(opset=99),
        os.path.join(bad, "ir_version2.onnx"): relu_model(ir_version=2),
        os.path.join(bad, "unsupported_op.onnx"): unsupported_model(),
        os.path.join(bad, "bad_raw_size.onnx"): bad_raw_size_model(),
        os.path.join(bad, "renamed_sqrt.onnx"):
            renamed_sqrt_model(),
        os.path.join(bad, "global_max_pool.onnx"): global_max_pool_model(),
        os.path.join(bad, "bad_typed_size.onnx"): bad_typed_size_model(),
        os.path.join(bad, "dangling_input.onnx"): dangling_model(),
        os.path.join(bad, "dynamic_input.onnx"): dynamic_model(),
        os.path.join(ops, "layer_normalization.onnx"): layer_normalization_model(),
        os.path.join(ops, "gelu_orders.onnx"): gelu_model(),
        os.path.join(ops, "einsum_outside.onnx"): einsum_model(),
        os.path.join(ops, "shape_arithmetic.onnx"): shape_model(),
        os.path.join(ops, "gather_negative.onnx"): gather_negative_model(),
        os.path.join(ops, "deform_renamed_norm.onnx"): deform_renamed_norm(source),
        os.path.join(ops, "deform_identity_norm.onnx"): deform_identity_norm(source),
        os.path.join(ops, "deform_opset18.onnx"): deform_opset18(source),
        os.path.join(ops, "deform_opset17.onnx"):
            deform_opset17(os.path.join(args.out, "deform_layer_dat.onnx")),
    }
    for path, m in files.items():
        with open(path, "wb") as f:
            f.write(m.SerializeToString())
    with open(os.path.join(bad, "not_onnx.txt"), "w") as f:
        f.write("This is a text file, not an ONNX model.\n")
    open(os.path.join(bad, "empty.onnx"), "wb").close()
    for path in sorted(files) + onnx_op_cases.write_all(bad, ops):
        print(path)
    write_dynamic_batch(ops)


if __name__ == "__main__":
    main()
