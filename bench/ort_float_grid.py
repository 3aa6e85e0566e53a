#!/usr/bin/python3
"""Write a copy of an ONNX file whose float64 GridSample grids are cast to float32.

PyTorch 1.13 exports of DAT and DAT++ compute the sampling grid in float64, and ONNX Runtime's
CPU GridSample only takes a float32 grid, so it cannot load those files. The copy inserts one
Cast(to=FLOAT) before each such grid input and changes nothing else; the benchmark runs ONNX
Runtime on the copy and says so.

Usage: /usr/bin/python3 bench/ort_float_grid.py IN.onnx OUT.onnx
Prints the number of casts inserted. Exit status 0 on success, 1 on a file it cannot read.
"""
import sys

import onnx
from onnx import TensorProto, helper, shape_inference


def grid_types(model):
    """Element type of every value name that shape inference can type."""
    inferred = shape_inference.infer_shapes(model)
    types = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(
            inferred.graph.output):
        types[value.name] = value.type.tensor_type.elem_type
    for initializer in model.graph.initializer:
        types[initializer.name] = initializer.data_type
    return types


def cast_grids(model):
    types = grid_types(model)
    nodes = []
    inserted = 0
    for node in model.graph.node:
        if node.op_type == "GridSample" and len(node.input) > 1 and \
                types.get(node.input[1]) == TensorProto.DOUBLE:
            cast_output = node.input[1] + "_as_float32_" + str(inserted)
            nodes.append(helper.make_node("Cast", [node.input[1]], [cast_output],
                                          name=node.name + "_grid_cast", to=TensorProto.FLOAT))
            node.input[1] = cast_output
            inserted += 1
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return inserted


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    try:
        model = onnx.load(argv[1])
    except Exception as error:  # onnx raises several types for unreadable files
        print(f"ort_float_grid: cannot read {argv[1]}: {error}", file=sys.stderr)
        return 1
    inserted = cast_grids(model)
    onnx.save(model, argv[2])
    print(inserted)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
