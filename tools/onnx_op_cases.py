"""Small ONNX models for the ops real DAT and DAT++ exports contain, with numpy references.

make_bad_onnx.py calls write_all(). Into OPS/ (valid models; NAME.input.f32 and
NAME.output.f32 hold a seeded input and numpy's output, raw little-endian float32):
  slice_negative      Slice with negative starts, INT64_MIN/INT64_MAX ends and steps -2, 3
  roll                torch.roll as exported: two Slices and a Concat
  concat_many         Concat of six inputs, one of them constant
  expand              Expand of (3, 1) to (2, 3, 4)
  where_mask          Where with a constant mask: one constant branch, then two live ones
  pad_constant        Pad with value 0.5 and unequal pads (opset 16 inputs)
  pad_axes_op18       Pad at opset 18 with the axes input
  einsum_general      four chained Einsums: q k^T, v attn^T, a 4-D product, a free-letter one
  gelu_softmax_op20   opset 20 Gelu, then Softmax over axis 1
  shape_folding       Shape, Gather, Mod, Div, Mul, Concat, Equal, Where, ConstantOfShape,
                      ScatterND, Range, Pow, Sqrt, Cast and Unsqueeze that all fold into the
                      shape of one Reshape
  matmul_add          MatMul with a constant (4, 5) weight plus a bias Add (fused into GEMM)
  external_data       a Conv whose weight and bias live in external_data.bin

Into BAD/ (each must be rejected with a clear error):
  opset22             default-domain opset 22, above the supported 13..21
  einsum_diagonal     Einsum 'bii,bij->bj' (a diagonal)
  gelu_tanh           opset 20 Gelu with approximate='tanh'
  where_live_cond     Where whose condition depends on the input
  pad_reflect         Pad in reflect mode
  dynamic_reshape     Reshape whose shape is computed from the input values
  external_escape     external data at '../escape.bin', outside the model's folder
  external_short      external data past the end of its 16-byte file
  external_length     external data whose length disagrees with the (2, 3) shape
  external_missing    external data in a file that does not exist
"""

import os

import numpy as np
from onnx import TensorProto, helper, numpy_helper

INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min


def _model(nodes, x_shape, y_shape, initializers=(), opset=16):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, y_shape)], list(initializers))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def _const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def _node(op, inputs, outputs, **attrs):
    return helper.make_node(op, inputs, outputs, name=op.lower() + "_" + outputs[0], **attrs)


def slice_negative(x):
    nodes = [_node("Slice", ["x", "starts", "ends", "axes", "steps"], ["y"])]
    inits = [_const("starts", np.array([-1, 1], np.int64)),
             _const("ends", np.array([INT64_MIN, INT64_MAX], np.int64)),
             _const("axes", np.array([1, -1], np.int64)),
             _const("steps", np.array([-2, 3], np.int64))]
    y = x[:, ::-2, 1::3]
    return _model(nodes, list(x.shape), list(y.shape), inits), y


def roll(x):
    nodes = [_node("Slice", ["x", "s0", "e0", "axis"], ["tail"]),
             _node("Slice", ["x", "s1", "e1", "axis"], ["head"]),
             _node("Concat", ["tail", "head"], ["y"], axis=2)]
    inits = [_const("s0", np.array([2], np.int64)), _const("e0", np.array([INT64_MAX], np.int64)),
             _const("s1", np.array([0], np.int64)), _const("e1", np.array([2], np.int64)),
             _const("axis", np.array([2], np.int64))]
    y = np.roll(x, -2, axis=2)
    return _model(nodes, list(x.shape), list(y.shape), inits), y


def concat_many(x):
    c = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    nodes = [_node("Sub", ["x", "one"], ["r"]),
             _node("Mul", ["x", "two"], ["m"]),
             _node("Add", ["x", "one"], ["a"]),
             _node("Concat", ["x", "r", "c", "m", "a", "x"], ["y"], axis=1)]
    inits = [_const("two", np.float32(2.0)), _const("one", np.float32(1.0)), _const("c", c)]
    y = np.concatenate([x, x - 1, c, x * 2, x + 1, x], axis=1)
    return _model(nodes, list(x.shape), list(y.shape), inits), y


def expand(x):
    nodes = [_node("Expand", ["x", "shape"], ["y"])]
    y = np.broadcast_to(x, (2, 3, 4)).copy()
    return _model(nodes, list(x.shape), list(y.shape),
                  [_const("shape", np.array([2, 3, 4], np.int64))]), y


def where_mask(x):
    mask = np.array([[True, False, True], [False, False, True]])
    nodes = [_node("Where", ["mask", "x", "fill"], ["masked"]),
             _node("Mul", ["x", "three"], ["x3"]),
             _node("Where", ["mask", "x3", "masked"], ["y"])]
    inits = [_const("mask", mask), _const("fill", np.float32(-100.0)),
             _const("three", np.float32(3.0))]
    masked = np.where(mask, x, np.float32(-100.0))
    y = np.where(mask, x * 3, masked)
    return _model(nodes, list(x.shape), list(y.shape), inits), y


def pad_constant(x):
    pads = np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)
    nodes = [_node("Pad", ["x", "pads", "value"], ["y"], mode="constant")]
    y = np.pad(x, ((0, 0), (0, 0), (1, 2), (2, 1)), constant_values=0.5)
    return _model(nodes, list(x.shape), list(y.shape),
                  [_const("pads", pads), _const("value", np.float32(0.5))]), y


def pad_axes_op18(x):
    nodes = [_node("Pad", ["x", "pads", "", "axes"], ["y"])]
    inits = [_const("pads", np.array([1, 0, 0, 3], np.int64)),
             _const("axes", np.array([-1, 2], np.int64))]
    y = np.pad(x, ((0, 0), (0, 0), (0, 3), (1, 0)))
    return _model(nodes, list(x.shape), list(y.shape), inits, opset=18), y


def einsum_general(x):
    """x (2, 6, 4): q k^T, v attn^T (operands swapped), a 4-D product and a free letter."""
    rng = np.random.default_rng(3)
    k = (0.3 * rng.standard_normal((2, 5, 4))).astype(np.float32)
    v = (0.3 * rng.standard_normal((2, 6, 5))).astype(np.float32)
    w = (0.3 * rng.standard_normal((3, 4))).astype(np.float32)
    nodes = [_node("Einsum", ["x", "k"], ["attn"], equation="bmc,bnc->bmn"),
             _node("Einsum", ["attn", "v"], ["ctx"], equation="bmn, bcn -> bcm"),
             _node("Reshape", ["ctx", "split"], ["ctx4"]),
             _node("Einsum", ["ctx4", "ctx4"], ["gram"], equation="bhmc,bhnc->bhmn"),
             _node("Einsum", ["gram", "w"], ["y"], equation="bhij,jk->bhik")]
    inits = [_const("k", k), _const("v", v), _const("w", w),
             _const("split", np.array([2, 2, 3, 6], np.int64))]
    attn = np.einsum("bmc,bnc->bmn", x, k)
    ctx = np.einsum("bmn,bcn->bcm", attn, v).reshape(2, 2, 3, 6)
    gram = np.einsum("bhmc,bhnc->bhmn", ctx, ctx)
    y = np.einsum("bhij,jk->bhik", gram, w)
    return _model(nodes, list(x.shape), list(y.shape), inits), y


def gelu_softmax_op20(x):
    from math import erf, sqrt
    nodes = [_node("Gelu", ["x"], ["g"]), _node("Softmax", ["g"], ["y"], axis=1)]
    gelu = np.vectorize(lambda v: 0.5 * v * (1.0 + erf(v / sqrt(2.0))))(x.astype(np.float64))
    e = np.exp(gelu - gelu.max(axis=1, keepdims=True))
    y = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
    return _model(nodes, list(x.shape), list(y.shape), opset=20), y


def shape_folding(x):
    """x (1, 6, 4) reshaped to (1, 12, 2), every dim computed by folded shape arithmetic."""
    i64 = TensorProto.INT64
    nodes = [
        _node("Shape", ["x"], ["s"]),
        _node("Gather", ["s", "i0"], ["n"], axis=0),
        _node("Gather", ["s", "i1"], ["c"], axis=0),
        _node("Gather", ["s", "i_last"], ["w"], axis=0),
        _node("Mod", ["c", "w"], ["m"]),                       # 6 mod 4 = 2
        _node("Mul", ["c", "w"], ["cw"]),
        _node("Div", ["cw", "m"], ["rows"]),                   # 12
        _node("Cast", ["m"], ["mf"], to=TensorProto.FLOAT),
        _node("Pow", ["mf", "two_f"], ["m2"]),                 # 4
        _node("Sqrt", ["m2"], ["m_back"]),                     # 2
        _node("Cast", ["m_back"], ["cols"], to=i64),
        _node("Equal", ["m", "two_i"], ["is_two"]),
        _node("Where", ["is_two", "n", "c"], ["batch"]),       # 1
        _node("Unsqueeze", ["batch", "ax0"], ["batch1"]),
        _node("Unsqueeze", ["rows", "ax0"], ["rows1"]),
        _node("Unsqueeze", ["cols", "ax0"], ["cols1"]),
        _node("ConstantOfShape", ["three"], ["ones"],
              value=helper.make_tensor("v", i64, [1], [7])),   # [7, 7, 7]
        _node("Range", ["zero_i", "three_s", "one_i"], ["positions"]),   # [0, 1, 2]
        _node("Unsqueeze", ["positions", "ax1"], ["indices"]),           # (3, 1)
        _node("Concat", ["batch1", "rows1", "cols1"], ["updates"], axis=0),
        _node("ScatterND", ["ones", "indices", "updates"], ["shape"]),
        _node("Reshape", ["x", "shape"], ["y"]),
    ]
    inits = [_const("i0", np.array(0, np.int64)), _const("i1", np.array(1, np.int64)),
             _const("i_last", np.array(-1, np.int64)), _const("two_f", np.float32(2.0)),
             _const("two_i", np.array(2, np.int64)), _const("ax0", np.array([0], np.int64)),
             _const("ax1", np.array([1], np.int64)), _const("three", np.array([3], np.int64)),
             _const("zero_i", np.array(0, np.int64)), _const("three_s", np.array(3, np.int64)),
             _const("one_i", np.array(1, np.int64))]
    y = x.reshape(1, 12, 2)
    return _model(nodes, list(x.shape), list(y.shape), inits), y


def matmul_add(x):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((4, 5)).astype(np.float32)
    b = rng.standard_normal(5).astype(np.float32)
    nodes = [_node("MatMul", ["x", "w"], ["p"]), _node("Add", ["b", "p"], ["y"])]
    y = x @ w + b
    return _model(nodes, list(x.shape), list(y.shape), [_const("w", w), _const("b", b)]), y


def _external(name, array, location, offset=None, length=None):
    t = numpy_helper.from_array(array, name)
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    entries = {"location": location}
    if offset is not None:
        entries["offset"] = str(offset)
    if length is not None:
        entries["length"] = str(length)
    for key, value in entries.items():
        e = t.external_data.add()
        e.key, e.value = key, value
    return t


def external_data(x, folder):
    rng = np.random.default_rng(7)
    w = rng.standard_normal((3, 2, 1, 1)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)
    blob = b"pad!" + w.tobytes() + b.tobytes()
    with open(os.path.join(folder, "external_data.bin"), "wb") as f:
        f.write(blob)
    inits = [_external("w", w, "external_data.bin", offset=4, length=w.nbytes),
             _external("b", b, "external_data.bin", offset=4 + w.nbytes)]
    nodes = [_node("Conv", ["x", "w", "b"], ["y"])]
    y = np.einsum("oi,bihw->bohw", w[:, :, 0, 0], x) + b[None, :, None, None]
    return _model(nodes, list(x.shape), list(y.shape), inits), y


def _relu(opset):
    return _model([_node("Relu", ["x"], ["y"])], [1, 4], [1, 4], opset=opset)


def bad_models(folder):
    w = np.ones((2, 3), np.float32)
    with open(os.path.join(folder, "external_short.bin"), "wb") as f:
        f.write(bytes(16))
    external = lambda t: _model([_node("MatMul", ["x", t.name], ["y"])], [1, 2], [1, 3], [t])
    return {
        "opset22": _relu(22),
        "einsum_diagonal": _model([_node("Einsum", ["x", "x"], ["y"], equation="bii,bij->bj")],
                                  [2, 3, 3], [2, 3]),
        "gelu_tanh": _model([_node("Gelu", ["x"], ["y"], approximate="tanh")], [1, 4], [1, 4],
                            opset=20),
        "where_live_cond": _model([_node("Greater", ["x", "zero"], ["positive"]),
                                   _node("Where", ["positive", "x", "zero"], ["y"])],
                                  [1, 4], [1, 4], [_const("zero", np.float32(0.0))]),
        "pad_reflect": _model([_node("Pad", ["x", "pads"], ["y"], mode="reflect")], [1, 4],
                              [1, 6], [_const("pads", np.array([0, 1, 0, 1], np.int64))]),
        "dynamic_reshape": _model([_node("Cast", ["x"], ["shape"], to=TensorProto.INT64),
                                   _node("Reshape", ["x", "shape"], ["y"])], [2], [2]),
        "external_escape": external(_external("w", w, "../escape.bin")),
        "external_short": external(_external("w", w, "external_short.bin", offset=4)),
        "external_length": external(_external("w", w, "external_short.bin", length=16)),
        "external_missing": external(_external("w", w, "no_such_file.bin")),
    }


def write_f32(path, array):
    np.asarray(array, np.float32).astype("<f4").tofile(path)


def write_all(bad, ops):
    """Writes every case; returns the paths written."""
    rng = np.random.default_rng(11)
    cases = {
        "slice_negative": (slice_negative, (2, 5, 7)),
        "roll": (roll, (1, 2, 6, 5)),
        "concat_many": (concat_many, (1, 2, 3)),
        "expand": (expand, (3, 1)),
        "where_mask": (where_mask, (2, 3)),
        "pad_constant": (pad_constant, (1, 2, 3, 4)),
        "pad_axes_op18": (pad_axes_op18, (1, 2, 3, 4)),
        "einsum_general": (einsum_general, (2, 6, 4)),
        "gelu_softmax_op20": (gelu_softmax_op20, (2, 3, 4)),
        "shape_folding": (shape_folding, (1, 6, 4)),
        "matmul_add": (matmul_add, (3, 4)),
        "external_data": (None, (1, 2, 3, 3)),
    }
    written = []
    for name, (make, shape) in cases.items():
        x = rng.standard_normal(shape).astype(np.float32)
        m, y = external_data(x, ops) if make is None else make(x)
        path = os.path.join(ops, name + ".onnx")
        with open(path, "wb") as f:
            f.write(m.SerializeToString())
        write_f32(os.path.join(ops, name + ".input.f32"), x)
        write_f32(os.path.join(ops, name + ".output.f32"), y)
        written.append(path)
    for name, m in bad_models(bad).items():
        path = os.path.join(bad, name + ".onnx")
        with open(path, "wb") as f:
            f.write(m.SerializeToString())
        written.append(path)
    return written
