"""Every supported op, as a one-node ONNX model, against ONNX Runtime: broadcasting, odd shapes,
groups, pads, opset-dependent forms. Inputs named c_* become initializers (constants)."""
import pathlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import assert_close, compare_with_ort, run_ort, run_tessera, sanitize

rng = np.random.default_rng(7)
F, I64, B = TensorProto.FLOAT, TensorProto.INT64, TensorProto.BOOL


def r(*shape, lo=-2.0, hi=2.0):
    return rng.uniform(lo, hi, shape).astype(np.float32)


def case(op, inputs, attrs=None, outs=1, out_types=None, opset=17, id=None):
    return pytest.param(op, inputs, attrs or {}, outs, out_types, opset, id=id or op)


def build(op, inputs, attrs, outs, out_types, opset):
    graph_inputs, inits, names = [], [], []
    for name, arr in inputs:
        if arr is None:
            names.append("")
            continue
        names.append(name)
        if name.startswith("c_"):
            inits.append(numpy_helper.from_array(arr, name))
        else:
            elem = helper.np_dtype_to_tensor_dtype(arr.dtype)
            graph_inputs.append(helper.make_tensor_value_info(name, elem, arr.shape))
    out_names = [f"y{i}" for i in range(outs)]
    node = helper.make_node(op, names, out_names, name="node0", **attrs)
    types = out_types or [F] * outs
    outputs = [helper.make_tensor_value_info(n, t, None) for n, t in zip(out_names, types)]
    g = helper.make_graph([node], "op_test", graph_inputs, outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


CASES = [
    # unary
    *[case(op, [("x", r(2, 3, 4, 5))]) for op in
      ["Relu", "Sigmoid", "Tanh", "Erf", "Exp", "Neg", "Abs", "Floor", "Ceil", "HardSwish",
       "Softplus", "Identity"]],
    case("Sqrt", [("x", r(3, 7, lo=0.1))]),
    case("Log", [("x", r(3, 7, lo=0.1))]),
    case("Reciprocal", [("x", r(3, 7, lo=0.5))]),
    case("HardSigmoid", [("x", r(4, 9))], {"alpha": 0.3, "beta": 0.4}),
    case("LeakyRelu", [("x", r(4, 9))], {"alpha": 0.2}),
    case("Elu", [("x", r(4, 9))], {"alpha": 0.7}),
    case("Clip", [("x", r(2, 8)), ("c_lo", np.array(-0.5, np.float32)), ("c_hi", np.array(0.7, np.float32))], id="Clip-both"),
    case("Clip", [("x", r(2, 8)), ("c_lo", np.array(0.0, np.float32))], id="Clip-min-only"),
    case("Clip", [("x", r(2, 8)), ("lo", np.array(-1.0, np.float32)), ("hi", np.array(0.25, np.float32))], id="Clip-runtime-bounds"),
    # binary with broadcasting
    case("Add", [("a", r(2, 3, 4, 5)), ("b", r(5))], id="Add-trailing"),
    case("Add", [("a", r(2, 1, 4, 1)), ("b", r(3, 1, 5))], id="Add-both-broadcast"),
    case("Sub", [("a", r(3, 4)), ("c_b", np.array(0.5, np.float32))], id="Sub-scalar"),
    case("Mul", [("a", r(1)), ("b", r(2, 3))], id="Mul-lhs-broadcast"),
    case("Div", [("a", r(2, 3, 5)), ("b", r(2, 1, 5, lo=0.5))], id="Div-middle"),
    case("Pow", [("a", r(3, 4)), ("c_b", np.array(2.0, np.float32))], id="Pow-square"),
    case("Pow", [("a", r(3, 4, lo=0.1)), ("b", r(3, 4, lo=-1, hi=1))], id="Pow-general"),
    case("Min", [("a", r(3, 4)), ("b", r(4))]),
    case("Max", [("a", r(3, 4)), ("b", r(3, 1))]),
    case("Add", [("a", rng.integers(-5, 5, (2, 3)).astype(np.int64)), ("b", rng.integers(-5, 5, (3,)).astype(np.int64))], out_types=[I64], id="Add-int64"),
    case("Div", [("a", rng.integers(-9, 9, (6,)).astype(np.int64)), ("c_b", np.array([2, 3, 4, -2, 5, 7], np.int64))], out_types=[I64], id="Div-int64-truncates"),
    case("Mod", [("a", rng.integers(-9, 9, (8,)).astype(np.int64)), ("c_b", np.array([2, 3, -4, 5, -2, 7, 3, -3], np.int64))], out_types=[I64], id="Mod-int64"),
    case("Mod", [("a", r(8)), ("b", r(8, lo=0.5))], {"fmod": 1}, id="Mod-fmod-float"),
    case("Equal", [("a", rng.integers(0, 3, (3, 4)).astype(np.int64)), ("b", rng.integers(0, 3, (4,)).astype(np.int64))], out_types=[B]),
    case("Less", [("a", r(3, 4)), ("b", r(3, 4))], out_types=[B]),
    case("Greater", [("a", r(3, 4)), ("b", r(1, 4))], out_types=[B]),
    case("And", [("a", rng.random((3, 4)) > 0.5), ("b", rng.random((4,)) > 0.5)], out_types=[B]),
    case("Or", [("a", rng.random((3, 4)) > 0.5), ("b", rng.random((3, 4)) > 0.5)], out_types=[B]),
    case("Not", [("a", rng.random((3, 4)) > 0.5)], out_types=[B]),
    case("Where", [("c", rng.random((3, 1)) > 0.5), ("a", r(3, 4)), ("b", r(4))]),
    case("Cast", [("x", r(3, 5, lo=-9, hi=9))], {"to": I64}, out_types=[I64], id="Cast-float-int64"),
    case("Cast", [("x", rng.integers(-9, 9, (3, 5)).astype(np.int64))], {"to": F}, id="Cast-int64-float"),
    case("Cast", [("x", rng.random((2, 3)) > 0.5)], {"to": F}, id="Cast-bool-float"),
    # convolution
    case("Conv", [("x", r(1, 3, 9, 9)), ("c_w", r(4, 3, 3, 3)), ("c_b", r(4))], {"pads": [1, 1, 1, 1]}, id="Conv-3x3-pad-bias"),
    case("Conv", [("x", r(2, 4, 11, 10)), ("c_w", r(6, 4, 3, 3))], {"strides": [2, 2]}, id="Conv-stride2-odd"),
    case("Conv", [("x", r(1, 4, 12, 12)), ("c_w", r(4, 4, 3, 3))], {"dilations": [2, 2], "pads": [2, 2, 2, 2]}, id="Conv-dilated"),
    case("Conv", [("x", r(1, 6, 8, 8)), ("c_w", r(4, 3, 3, 3))], {"group": 2, "pads": [1, 1, 1, 1]}, id="Conv-groups2"),
    case("Conv", [("x", r(1, 8, 10, 10)), ("c_w", r(8, 1, 3, 3)), ("c_b", r(8))], {"group": 8, "pads": [1, 1, 1, 1], "strides": [2, 2]}, id="Conv-depthwise"),
    case("Conv", [("x", r(1, 3, 7, 9)), ("c_w", r(5, 3, 5, 4))], {"pads": [1, 0, 2, 1]}, id="Conv-asym-pads"),
    case("Conv", [("x", r(1, 3, 7, 8)), ("c_w", r(2, 3, 3, 3))], {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, id="Conv-same-upper"),
    case("Conv", [("x", r(1, 3, 7, 8)), ("c_w", r(2, 3, 4, 4))], {"auto_pad": "SAME_LOWER"}, id="Conv-same-lower"),
    case("Conv", [("x", r(1, 3, 7, 8)), ("c_w", r(2, 3, 3, 3))], {"auto_pad": "VALID"}, id="Conv-valid"),
    case("Conv", [("x", r(2, 4, 20)), ("c_w", r(3, 4, 5)), ("c_b", r(3))], {"pads": [2, 2]}, id="Conv-1d"),
    # large enough for the Winograd path (3x3, stride 1, channels % 8 == 0, >= 100 tiles)
    case("Conv", [("x", r(2, 32, 21, 19, lo=-1, hi=1)), ("c_w", r(40, 32, 3, 3, lo=-0.2, hi=0.2)), ("c_b", r(40))], {"pads": [1, 1, 1, 1]}, id="Conv-winograd-odd-size"),
    case("Conv", [("x", r(1, 32, 24, 24, lo=-1, hi=1)), ("c_w", r(32, 32, 3, 3, lo=-0.2, hi=0.2))], {"pads": [0, 1, 2, 0]}, id="Conv-winograd-asym-pads"),
    case("BatchNormalization", [("x", r(2, 3, 4, 5)), ("c_s", r(3)), ("c_b", r(3)), ("c_m", r(3)), ("c_v", r(3, lo=0.5))], {"epsilon": 1e-3}),
    # matmul family
    case("MatMul", [("a", r(5, 7)), ("b", r(7, 3))], id="MatMul-2d"),
    case("MatMul", [("a", r(2, 5, 7)), ("c_b", r(7, 3))], id="MatMul-const-weights"),
    case("MatMul", [("a", r(2, 1, 3, 4)), ("b", r(5, 4, 6))], id="MatMul-batch-broadcast"),
    case("MatMul", [("a", r(4)), ("b", r(4, 3))], id="MatMul-1d-lhs"),
    case("MatMul", [("a", r(2, 3, 4)), ("b", r(4))], id="MatMul-1d-rhs"),
    case("Gemm", [("a", r(3, 5)), ("c_b", r(4, 5)), ("c_c", r(4))], {"transB": 1}, id="Gemm-transB-bias"),
    case("Gemm", [("a", r(5, 3)), ("b", r(5, 4)), ("c_c", r(3, 1))], {"transA": 1, "alpha": 0.5, "beta": 2.0}, id="Gemm-transA-alpha-beta"),
    case("Gemm", [("a", r(3, 5)), ("b", r(5, 4)), ("c", r(3, 4))], id="Gemm-runtime-C"),
    # pooling
    case("MaxPool", [("x", r(1, 3, 8, 8))], {"kernel_shape": [2, 2], "strides": [2, 2]}, id="MaxPool-2x2"),
    case("MaxPool", [("x", r(2, 3, 9, 9))], {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}, id="MaxPool-3x3-pad"),
    case("MaxPool", [("x", r(1, 2, 10, 10))], {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, id="MaxPool-ceil"),
    case("MaxPool", [("x", r(1, 2, 10, 10))], {"kernel_shape": [2, 2], "dilations": [2, 2]}, id="MaxPool-dilated"),
    case("AveragePool", [("x", r(1, 3, 7, 7))], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, id="AvgPool-exclude-pad"),
    case("AveragePool", [("x", r(1, 3, 7, 7))], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 1}, id="AvgPool-include-pad"),
    case("GlobalAveragePool", [("x", r(2, 5, 6, 7))]),
    case("GlobalMaxPool", [("x", r(2, 5, 6, 7))]),
    # shape and movement
    case("Flatten", [("x", r(2, 3, 4, 5))], {"axis": 2}),
    case("Flatten", [("x", r(2, 3, 4))], {"axis": 0}, id="Flatten-axis0"),
    case("Reshape", [("x", r(2, 3, 4)), ("c_s", np.array([0, -1], np.int64))]),
    case("Transpose", [("x", r(2, 3, 4, 5))], {"perm": [0, 2, 3, 1]}),
    case("Transpose", [("x", r(2, 3, 4))], id="Transpose-default"),
    case("Concat", [("a", r(2, 3, 4)), ("b", r(2, 1, 4)), ("c_c", r(2, 2, 4))], {"axis": 1}),
    case("Concat", [("a", r(2, 3)), ("b", r(2, 5))], {"axis": -1}, id="Concat-last"),
    case("Split", [("x", r(2, 6, 3))], {"axis": 1}, outs=3, id="Split-equal"),
    case("Split", [("x", r(7, 2)), ("c_s", np.array([2, 5], np.int64))], {"axis": 0}, outs=2, id="Split-sizes"),
    case("Slice", [("x", r(5, 6, 7)), ("c_s", np.array([1, -1], np.int64)), ("c_e", np.array([4, -100], np.int64)), ("c_a", np.array([0, 2], np.int64)), ("c_t", np.array([2, -2], np.int64))], id="Slice-steps-negative"),
    case("Slice", [("x", r(4, 5)), ("c_s", np.array([-3], np.int64)), ("c_e", np.array([1000], np.int64))], id="Slice-clamp"),
    case("Gather", [("x", r(5, 4)), ("c_i", np.array([[0, 4], [-1, 2]], np.int64))], {"axis": 0}),
    case("Gather", [("x", r(3, 5, 2)), ("c_i", np.array(3, np.int64))], {"axis": 1}, id="Gather-scalar-axis1"),
    case("Gather", [("x", r(10, 3)), ("i", rng.integers(0, 10, (2, 4)).astype(np.int64))], id="Gather-runtime-indices"),
    case("Squeeze", [("x", r(1, 3, 1, 4)), ("c_a", np.array([0, 2], np.int64))]),
    case("Unsqueeze", [("x", r(3, 4)), ("c_a", np.array([0, 3], np.int64))]),
    case("Squeeze", [("x", r(1, 3, 1))], {"axes": [0]}, opset=11, id="Squeeze-opset11-attr"),
    case("Expand", [("x", r(3, 1)), ("c_s", np.array([2, 3, 4], np.int64))]),
    case("Tile", [("x", r(2, 3)), ("c_r", np.array([2, 2], np.int64))]),
    case("Pad", [("x", r(2, 3, 4)), ("c_p", np.array([0, 1, 2, 0, 2, 1], np.int64)), ("c_v", np.array(0.5, np.float32))], id="Pad-constant"),
    case("Pad", [("x", r(1, 2, 4, 5)), ("c_p", np.array([0, 0, 2, 3, 0, 0, 1, 2], np.int64))], {"mode": "reflect"}, id="Pad-reflect"),
    case("Pad", [("x", r(1, 2, 4, 5)), ("c_p", np.array([0, 0, 1, 1, 0, 0, 2, 2], np.int64))], {"mode": "edge"}, id="Pad-edge"),
    case("Shape", [("x", r(2, 3, 4))], out_types=[I64]),
    case("Shape", [("x", r(2, 3, 4, 5))], {"start": 1, "end": -1}, out_types=[I64], id="Shape-start-end"),
    case("Range", [("c_a", np.array(1, np.int64)), ("c_b", np.array(10, np.int64)), ("c_d", np.array(3, np.int64))], out_types=[I64]),
    case("ConstantOfShape", [("c_s", np.array([2, 3], np.int64))], {"value": numpy_helper.from_array(np.array([1.5], np.float32))}),
    # normalization and reductions
    case("Softmax", [("x", r(2, 3, 7))], {"axis": 1}, id="Softmax-axis1"),
    case("Softmax", [("x", r(4, 10))], id="Softmax-last"),
    case("Softmax", [("x", r(2, 3, 4))], {"axis": 1}, opset=11, id="Softmax-opset11-coerced"),
    case("LogSoftmax", [("x", r(3, 8))]),
    case("LayerNormalization", [("x", r(2, 5, 16)), ("c_g", r(16)), ("c_b", r(16))], {"epsilon": 1e-5}, id="LayerNorm-last"),
    case("LayerNormalization", [("x", r(2, 3, 4)), ("c_g", r(3, 4))], {"axis": 1}, id="LayerNorm-axis1-nobias"),
    case("LayerNormalization", [("x", r(2, 5, 16)), ("c_g", r(16)), ("c_b", r(16))], {"axis": -1}, outs=3,
         id="LayerNorm-mean-invstd"),
    case("ReduceMean", [("x", r(2, 3, 4))], {"axes": [-1], "keepdims": 1}, id="ReduceMean-last"),
    case("ReduceMean", [("x", r(2, 3, 4, 5))], {"axes": [1, 3], "keepdims": 0}, id="ReduceMean-inner-axes"),
    case("ReduceSum", [("x", r(2, 3, 4)), ("c_a", np.array([0], np.int64))], id="ReduceSum-axes-input"),
    case("ReduceMax", [("x", r(2, 3, 4))], {"axes": [1]}),
    case("ReduceMean", [("x", r(2, 3, 4)), ("c_a", np.array([2], np.int64))], opset=18, id="ReduceMean-opset18"),
    # resize
    case("Resize", [("x", r(1, 2, 4, 5)), ("c_roi", np.array([], np.float32)), ("c_s", np.array([1, 1, 2, 2], np.float32))], {"mode": "nearest"}, id="Resize-nearest-x2"),
    case("Resize", [("x", r(1, 2, 4, 5)), ("c_roi", np.array([], np.float32)), ("c_s", np.array([], np.float32)), ("c_z", np.array([1, 2, 7, 9], np.int64))], {"mode": "linear"}, id="Resize-linear-sizes"),
    case("Resize", [("x", r(1, 1, 3, 4)), ("c_roi", np.array([], np.float32)), ("c_s", np.array([1, 1, 2, 1.5], np.float32))], {"mode": "linear", "coordinate_transformation_mode": "align_corners"}, id="Resize-align-corners"),
    case("Resize", [("x", r(1, 1, 4, 4)), ("c_roi", np.array([], np.float32)), ("c_s", np.array([1, 1, 0.5, 0.5], np.float32))], {"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, id="Resize-nearest-down"),
    # opset 18: axes, keep_aspect_ratio_policy; opset 19: half_pixel_symmetric
    case("Resize", [("x", r(1, 2, 4, 6)), ("c_roi", np.array([], np.float32)), ("c_s", np.array([2, 1.5], np.float32))], {"mode": "linear", "axes": [2, -1]}, opset=18, id="Resize-axes"),
    case("Resize", [("x", r(1, 2, 4, 6)), ("c_roi", np.array([], np.float32)), ("c_s", np.array([], np.float32)), ("c_z", np.array([7, 7], np.int64))], {"mode": "linear", "axes": [2, 3], "keep_aspect_ratio_policy": "not_larger"}, opset=18, id="Resize-keep-aspect-not-larger"),
    case("Resize", [("x", r(1, 2, 4, 6)), ("c_roi", np.array([], np.float32)), ("c_s", np.array([], np.float32)), ("c_z", np.array([7, 7], np.int64))], {"mode": "nearest", "axes": [2, 3], "keep_aspect_ratio_policy": "not_smaller"}, opset=18, id="Resize-keep-aspect-not-smaller"),
    case("Resize", [("x", r(1, 1, 5, 7)), ("c_roi", np.array([], np.float32)), ("c_s", np.array([1, 1, 0.6, 1.7], np.float32))], {"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric"}, opset=19, id="Resize-half-pixel-symmetric"),
    case("Resize", [("x", r(1, 1, 5, 7)), ("c_roi", np.array([], np.float32)), ("c_s", np.array([1, 1, 1.5, 0.7], np.float32))], {"mode": "nearest", "coordinate_transformation_mode": "half_pixel_symmetric"}, opset=19, id="Resize-nearest-half-pixel-symmetric"),
    # ScatterND (what torch exports index_put / slice assignment as)
    case("ScatterND", [("x", r(4, 5, 6)), ("c_i", np.array([[1], [3]], np.int64)), ("u", r(2, 5, 6))], id="ScatterND-rows"),
    case("ScatterND", [("x", r(4, 5, 6)), ("c_i", np.array([[0, 1], [2, -1]], np.int64)), ("u", r(2, 6))], id="ScatterND-2d-negative"),
    case("ScatterND", [("x", r(3, 4)), ("i", np.array([[[0, 0]], [[2, 3]]], np.int64)), ("u", r(2, 1))], id="ScatterND-elements-runtime-indices"),
    case("ScatterND", [("x", r(4, 3)), ("c_i", np.array([[1], [1], [2]], np.int64)), ("u", r(3, 3))], {"reduction": "add"}, opset=16, id="ScatterND-add-repeats"),
    case("ScatterND", [("x", r(4, 3)), ("c_i", np.array([[0], [3]], np.int64)), ("u", r(2, 3))], {"reduction": "max"}, opset=18, id="ScatterND-max"),
    # Einsum (decomposed into ReduceSum / Transpose / Reshape / MatMul)
    case("Einsum", [("a", r(2, 3, 4, 5, 6)), ("b", r(2, 3, 4, 7, 6))], {"equation": "B G H I D, B G H J D -> B G H I J"}, opset=12, id="Einsum-attention-scores"),
    case("Einsum", [("a", r(2, 4, 5, 7)), ("b", r(2, 4, 7, 6))], {"equation": "bhij,bhjd->bhid"}, opset=12, id="Einsum-attention-values"),
    case("Einsum", [("a", r(3, 4)), ("c_b", r(4, 5))], {"equation": "ij,jk"}, opset=12, id="Einsum-implicit-matmul"),
    case("Einsum", [("a", r(2, 3, 4)), ("b", r(4, 5))], {"equation": "...j,jk->...k"}, opset=12, id="Einsum-ellipsis"),
    case("Einsum", [("a", r(3, 4, 5)), ("b", r(5, 4, 6))], {"equation": "abc,cbd->ad"}, opset=12, id="Einsum-two-contracted"),
    case("Einsum", [("a", r(3, 4)), ("b", r(5, 2))], {"equation": "ij,kl->ijkl"}, opset=12, id="Einsum-outer"),
    case("Einsum", [("a", r(3, 4, 2)), ("b", r(3, 4))], {"equation": "ijk,ij->i"}, opset=12, id="Einsum-sum-one-side"),
    case("Einsum", [("a", r(1, 4, 5)), ("b", r(3, 5, 2))], {"equation": "bij,bjk->bik"}, opset=12, id="Einsum-broadcast-batch"),
    case("Einsum", [("a", r(3, 4, 5))], {"equation": "ijk->kij"}, opset=12, id="Einsum-transpose"),
    case("Einsum", [("a", r(3, 4, 5))], {"equation": "ijk->j"}, opset=12, id="Einsum-reduce"),
    case("Einsum", [("a", r(6)), ("b", r(6))], {"equation": "i,i->"}, opset=12, id="Einsum-dot"),
    case("Einsum", [("a", r(3, 4)), ("b", r(3, 4))], {"equation": "ij,ij->ij"}, opset=12, id="Einsum-elementwise"),
    # what transformer exports use for positions, masks and lookups
    case("GatherElements", [("x", r(3, 4, 5)), ("i", rng.integers(-3, 3, (3, 2, 5)).astype(np.int64))], {"axis": 1}, id="GatherElements-axis1"),
    case("GatherElements", [("x", r(4, 3)), ("c_i", np.array([[0, 3, 1]], np.int64))], {"axis": 0}, id="GatherElements-axis0-const"),
    case("GatherND", [("x", r(3, 4, 5)), ("c_i", np.array([[0, 1], [2, -1]], np.int64))], id="GatherND-slices"),
    case("GatherND", [("x", r(2, 4, 5)), ("i", np.array([[[1], [3]], [[0], [0]]], np.int64))], {"batch_dims": 1}, id="GatherND-batch-dims"),
    case("GatherND", [("x", r(3, 4)), ("c_i", np.array([[0, 0], [2, 3], [1, -2]], np.int64))], id="GatherND-elements"),
    case("CumSum", [("x", r(3, 5)), ("c_a", np.array(1, np.int64))], id="CumSum"),
    case("CumSum", [("x", rng.integers(0, 3, (2, 6)).astype(np.int64)), ("c_a", np.array(-1, np.int64))], {"exclusive": 1, "reverse": 1}, out_types=[I64], id="CumSum-int64-exclusive-reverse"),
    case("Trilu", [("x", r(2, 4, 5))], id="Trilu-upper"),
    case("Trilu", [("x", r(4, 5)), ("c_k", np.array(-1, np.int64))], {"upper": 0}, id="Trilu-lower-k"),
    case("IsNaN", [("x", np.array([1.0, np.nan, -np.inf, 0.0], np.float32))], out_types=[B]),
    case("IsInf", [("x", np.array([1.0, np.nan, -np.inf, np.inf], np.float32))], out_types=[B]),
    case("IsInf", [("x", np.array([1.0, np.nan, -np.inf, np.inf], np.float32))], {"detect_negative": 0}, out_types=[B], id="IsInf-positive-only"),
    # opsets 19-22: new attributes, Gelu (20), unchanged ops at the newest opset Tessera reads
    case("AveragePool", [("x", r(1, 2, 9, 9))], {"kernel_shape": [3, 3], "dilations": [2, 2]}, opset=19, id="AveragePool-dilations-opset19"),
    case("Gelu", [("x", r(3, 8))], opset=20, id="Gelu-opset20"),
    case("Gelu", [("x", r(3, 8))], {"approximate": "tanh"}, opset=20, id="Gelu-tanh-opset20"),
    case("Conv", [("x", r(1, 3, 8, 8)), ("c_w", r(4, 3, 3, 3)), ("c_b", r(4))], {"pads": [1, 1, 1, 1]}, opset=22, id="Conv-opset22"),
    case("Reshape", [("x", r(2, 3, 4)), ("c_s", np.array([0, -1], np.int64))], opset=21, id="Reshape-opset21"),
    case("Flatten", [("x", r(2, 3, 4))], {"axis": 2}, opset=21, id="Flatten-opset21"),
    case("Transpose", [("x", r(2, 3, 4))], {"perm": [2, 0, 1]}, opset=21, id="Transpose-opset21"),
]


@pytest.mark.parametrize("op,inputs,attrs,outs,out_types,opset", CASES)
def test_op_matches_onnxruntime(op, inputs, attrs, outs, out_types, opset, tmp_path):
    model = build(op, inputs, attrs, outs, out_types, opset)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    feeds = {n: a for n, a in inputs if a is not None and not n.startswith("c_")}
    compare_with_ort(path, feeds)


@pytest.mark.parametrize("op,inputs,attrs,outs,out_types,opset", CASES)
def test_op_on_the_cuda_lowering(op, inputs, attrs, outs, out_types, opset, tmp_path):
    # The same cases through the CUDA backend's lowering on the host interpreter (--engine
    # cuda-host): either ORT's answer, or a clean UNIMPLEMENTED naming the op; never a crash.
    model = build(op, inputs, attrs, outs, out_types, opset)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    feeds = {n: a for n, a in inputs if a is not None and not n.startswith("c_")}
    ref = run_ort(path, feeds)
    ours, proc = run_tessera(["--model-file", str(path), "--engine", "cuda-host"], feeds,
                             check=False)
    assert proc.returncode in (0, 1), f"{op}: exit {proc.returncode}: {proc.stderr}"
    if proc.returncode == 1:
        assert "UNIMPLEMENTED" in proc.stderr and op in proc.stderr, proc.stderr
        return
    for name, r in ref.items():
        assert_close(ours[sanitize(name)], r, what=f"{op} (cuda-host):{name}")


def test_every_supported_op_has_a_case(tessera_bin):
    import subprocess
    ops = subprocess.run([str(tessera_bin), "ops"], capture_output=True, text=True, check=True)
    covered = {c.values[0] for c in CASES}
    missing = [op for op in ops.stdout.split() if op not in covered]
    # Dropout is exercised by the fusion and zoo tests instead.
    assert set(missing) <= {"Dropout", "Size", "Xor", "LessOrEqual", "GreaterOrEqual", "ReduceMin"}, missing
