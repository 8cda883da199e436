"""Each ONNX op and attribute variant load() reads, on a hand-built graph, against ONNX Runtime
(the reference implementation of the format); unsupported values are ValueErrors naming them."""
from __future__ import annotations

import math

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import helper  # noqa: E402
from onnx_helpers import model, ort_run, save  # noqa: E402

from pyconvnet import layers as L  # noqa: E402
from pyconvnet import onnx as pox  # noqa: E402

R = np.random.default_rng(0)


def w(*shape):
    return R.standard_normal(shape).astype(np.float32)


def node(op, inputs, **attrs):
    return helper.make_node(op, inputs, ["y"], **attrs)


CONV_W, CONV_B = w(6, 2, 3, 2), w(6)
CASES = {
    # Conv: groups, dilation, asymmetric pads, auto_pad with stride
    "conv_groups_dilation": ([node("Conv", ["x", "W", "B"], group=2, dilations=[2, 1], pads=[1, 0, 2, 1])],
                             (4, 9, 8), {"W": w(6, 2, 3, 2), "B": w(6)}),
    "conv_same_upper_stride": ([node("Conv", ["x", "W"], auto_pad="SAME_UPPER", strides=[2, 2])], (2, 7, 8),
                               {"W": w(3, 2, 3, 3)}),
    "conv_same_lower": ([node("Conv", ["x", "W"], auto_pad="SAME_LOWER", kernel_shape=[2, 4])], (2, 5, 6),
                        {"W": w(3, 2, 2, 4)}),
    "conv_valid": ([node("Conv", ["x", "W", "B"], auto_pad="VALID", strides=[1, 2])], (2, 6, 7),
                   {"W": CONV_W[:, :, :, :], "B": CONV_B}),
    "conv_transpose_asym": ([node("ConvTranspose", ["x", "W", "B"], strides=[2, 2], pads=[1, 0, 0, 1],
                                  output_padding=[1, 0])], (3, 4, 5), {"W": w(3, 2, 3, 3), "B": w(2)}),
    "gemm_transB0_alpha_beta": ([node("Gemm", ["x", "W", "C"], alpha=0.5, beta=2.0)], (5,),
                                {"W": w(5, 3), "C": w(1, 3)}),
    "matmul_add": ([helper.make_node("MatMul", ["x", "W"], ["t"]), node("Add", ["t", "B"])], (4,),
                   {"W": w(4, 6), "B": w(6)}),
    "maxpool_ceil_dilation": ([node("MaxPool", ["x"], kernel_shape=[3, 2], strides=[2, 2], pads=[1, 1, 1, 1],
                                    ceil_mode=1, dilations=[1, 2])], (2, 7, 8), {}),
    "maxpool_asym_pads": ([node("MaxPool", ["x"], kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 1, 1])],
                          (2, 5, 5), {}),
    "maxpool_same_upper": ([node("MaxPool", ["x"], kernel_shape=[3, 3], strides=[2, 2], auto_pad="SAME_UPPER")],
                           (2, 6, 7), {}),
    "avgpool_exclude_pad": ([node("AveragePool", ["x"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])],
                            (2, 7, 6), {}),
    "avgpool_include_pad_ceil": ([node("AveragePool", ["x"], kernel_shape=[2, 2], strides=[2, 2], pads=[1, 1, 1, 1],
                                       count_include_pad=1, ceil_mode=1)], (2, 6, 5), {}),
    "avgpool_asym_include": ([node("AveragePool", ["x"], kernel_shape=[2, 3], pads=[1, 0, 0, 2],
                                   count_include_pad=1)], (1, 5, 6), {}),
    "global_avg": ([node("GlobalAveragePool", ["x"])], (3, 5, 4), {}),
    "global_max": ([node("GlobalMaxPool", ["x"])], (3, 5, 4), {}),
    "reduce_mean_keep": ([node("ReduceMean", ["x", "axes"], keepdims=1)], (3, 4, 5),
                         {"axes": np.array([2, 3], np.int64)}, 18),
    "reduce_max_nokeep": ([node("ReduceMax", ["x", "axes"], keepdims=0)], (3, 4, 5),
                          {"axes": np.array([-1, -2], np.int64)}, 18),
    "reduce_mean_attr_opset13": ([node("ReduceMean", ["x"], axes=[2, 3])], (3, 4, 5), {}, 13),
    "batchnorm": ([node("BatchNormalization", ["x", "s", "b", "m", "v"], epsilon=1e-3)], (3, 4, 4),
                  {"s": w(3), "b": w(3), "m": w(3), "v": np.abs(w(3)) + 0.5}),
    "leaky_relu": ([node("LeakyRelu", ["x"], alpha=0.2)], (3, 4), {}),
    "sigmoid_tanh": ([helper.make_node("Sigmoid", ["x"], ["t"]), node("Tanh", ["t"])], (3, 4), {}),
    "gelu_op_tanh": ([node("Gelu", ["x"], approximate="tanh")], (3, 4), {}, 20),
    "gelu_op_exact": ([node("Gelu", ["x"])], (3, 4), {}, 20),
    "erf_alone": ([node("Erf", ["x"])], (3, 4), {}),
    "softmax_axis": ([node("Softmax", ["x"], axis=1)], (3, 4), {}),
    "logsoftmax_last": ([node("LogSoftmax", ["x"])], (3, 4), {}),
    "flatten": ([node("Flatten", ["x"], axis=1)], (3, 2, 2), {}),
    "reshape_zero_minus1": ([node("Reshape", ["x", "s"])], (4, 3, 2), {"s": np.array([0, -1, 2], np.int64)}),
    "transpose": ([node("Transpose", ["x"], perm=[0, 2, 3, 1])], (3, 4, 5), {}),
    "squeeze_unsqueeze": ([helper.make_node("Unsqueeze", ["x", "a"], ["t"]), node("Squeeze", ["t", "a"])], (3, 4),
                          {"a": np.array([2], np.int64)}),
    "concat_self": ([helper.make_node("Relu", ["x"], ["r"]), node("Concat", ["x", "r"], axis=1)], (2, 3, 3), {}),
    "arith_consts": ([helper.make_node("Sub", ["x", "m"], ["a"]), helper.make_node("Div", ["a", "s"], ["b"]),
                      helper.make_node("Mul", ["c", "b"], ["d"]), node("Add", ["d", "e"])], (3, 2, 2),
                     {"m": w(3, 1, 1), "s": np.abs(w(1, 3, 1, 1)) + 1, "c": np.float32(2.0), "e": w(2)}),
    "reverse_sub_div": ([helper.make_node("Sub", ["c", "x"], ["a"]), node("Div", ["c", "a"])], (3, 4),
                        {"c": np.float32(10.0)}),
    "pow_const": ([node("Pow", ["x", "p"])], (3, 4), {"p": np.float32(2.0)}),
    "tensor_mul_broadcast": ([helper.make_node("GlobalAveragePool", ["x"], ["g"]),
                              helper.make_node("Sigmoid", ["g"], ["s"]), node("Mul", ["x", "s"])], (3, 4, 4), {}),
    "resize_scales_asymmetric": ([node("Resize", ["x", "", "sc"], mode="nearest",
                                       coordinate_transformation_mode="asymmetric", nearest_mode="floor")],
                                 (2, 3, 4), {"sc": np.array([1, 1, 2, 3], np.float32)}),
    "resize_half_pixel_int": ([node("Resize", ["x", "", "sc"], mode="nearest")], (2, 3, 4),
                              {"sc": np.array([1, 1, 2, 2], np.float32)}),
    "resize_sizes": ([helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Slice", ["s", "b", "e"], ["nc"]),
                      helper.make_node("Concat", ["nc", "hw"], ["sz"], axis=0),
                      node("Resize", ["x", "", "", "sz"], mode="nearest", coordinate_transformation_mode="asymmetric",
                           nearest_mode="floor")], (2, 3, 4),
                     {"b": np.array([0], np.int64), "e": np.array([2], np.int64), "hw": np.array([7, 5], np.int64)}),
    "depth_to_space_crd": ([node("DepthToSpace", ["x"], blocksize=2, mode="CRD")], (8, 3, 2), {}),
    "depth_to_space_dcr": ([node("DepthToSpace", ["x"], blocksize=2, mode="DCR")], (8, 3, 2), {}),
    "sum_three": ([helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Sigmoid", ["x"], ["s"]),
                   node("Sum", ["x", "r", "s"])], (3, 4), {}),
    "dropout_identity": ([helper.make_node("Dropout", ["x", "r"], ["t"]), node("Identity", ["t"])], (3, 4),
                         {"r": np.float32(0.3)}),
    "pad_reflect": ([node("Pad", ["x", "p"], mode="reflect")], (2, 4, 5),
                    {"p": np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64)}),
    "pad_constant_value": ([node("Pad", ["x", "p", "v"])], (2, 4, 5),
                           {"p": np.array([0, 0, 1, 0, 0, 0, 0, 3], np.int64), "v": np.float32(-2.5)}),
    "pad_edge": ([node("Pad", ["x", "p"], mode="edge")], (2, 3, 3), {"p": np.array([0, 0, 2, 1, 0, 0, 1, 2],
                                                                                   np.int64)}),
    "clip_relu6": ([node("Clip", ["x", "lo", "hi"])], (3, 4), {"lo": np.float32(0), "hi": np.float32(6)}),
    "clip_min_only": ([node("Clip", ["x", "lo"])], (3, 4), {"lo": np.float32(-0.2)}),
    "constant_node": ([helper.make_node("Constant", [], ["c"], value_float=1.5), node("Mul", ["x", "c"])],
                      (3, 4), {}),
    "shape_arithmetic": ([helper.make_node("Shape", ["x"], ["s"]),
                          helper.make_node("Gather", ["s", "i0"], ["n"], axis=0),
                          helper.make_node("Unsqueeze", ["n", "ax"], ["n1"]),
                          helper.make_node("Concat", ["n1", "m1"], ["shape"], axis=0),
                          node("Reshape", ["x", "shape"])], (3, 4, 2),
                         {"i0": np.array(0, np.int64), "ax": np.array([0], np.int64),
                          "m1": np.array([-1], np.int64)}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_op_matches_onnxruntime(case, tmp_path):
    spec = CASES[case]
    nodes, shape, inits = spec[:3]
    opset = spec[3] if len(spec) > 3 else 17
    path = save(model(nodes, shape, inits=inits, opset=opset), tmp_path / f"{case}.onnx")
    x = (R.standard_normal((3,) + shape) * 2).astype(np.float32)
    want = ort_run(path, x)
    g = pox.load(path)
    got = g.forward(x)
    assert got.shape == want.shape, f"{case}: shape {got.shape} != onnxruntime {want.shape}"
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * max(1.0, float(np.abs(want).max())), err_msg=case)


def test_relu6_and_one_sided_clip_layers(tmp_path):
    path = save(model(*CASES["clip_relu6"][:1], (3, 4), inits=CASES["clip_relu6"][2]), tmp_path / "c.onnx")
    assert any(isinstance(l, L.ReLU6) for _, l in pox.load(path)._children())
    path = save(model(*CASES["clip_min_only"][:1], (3, 4), inits=CASES["clip_min_only"][2]), tmp_path / "c2.onnx")
    (layer,) = [l for _, l in pox.load(path)._children()]
    assert isinstance(layer, L.Hardtanh) and layer.max_val == math.inf


def test_fixed_batch_of_one_still_takes_any_batch(tmp_path):
    """A model exported without dynamic axes (batch 1 written everywhere) runs on any batch."""
    nodes = [node("Reshape", ["x", "s"])]
    path = save(model(nodes, (4, 3), inits={"s": np.array([1, 12], np.int64)}, batch=1), tmp_path / "b.onnx")
    g = pox.load(path)
    assert g.forward(np.ones((5, 4, 3), np.float32)).shape == (5, 12)


def test_matmul_add_is_one_linear(tmp_path):
    path = save(model(*CASES["matmul_add"][:1], (4,), inits=CASES["matmul_add"][2]), tmp_path / "m.onnx")
    (layer,) = [l for _, l in pox.load(path)._children()]
    assert isinstance(layer, L.Linear) and layer.bias


UNSUPPORTED = {
    "depth_to_space_bad_channels": ([node("DepthToSpace", ["x"], blocksize=2, mode="CRD")], (6, 3, 2), {},
                                    r"expected \(N, C\*4, H, W\), got \(N, 6, 3, 2\)"),
    "resize_linear": ([node("Resize", ["x", "", "sc"], mode="linear")], (2, 3, 4),
                      {"sc": np.array([1, 1, 2, 2], np.float32)}, "mode 'linear'"),
    "conv_weight_computed": ([helper.make_node("Relu", ["x"], ["r"]), node("Conv", ["x", "r"])], (2, 3, 3), {},
                             "not a constant initializer"),
    "reshape_merges_batch": ([node("Reshape", ["x", "s"])], (4, 3), {"s": np.array([-1], np.int64)},
                             "merge the batch"),
    "transpose_moves_batch": ([node("Transpose", ["x"], perm=[1, 0, 2])], (4, 3), {}, "moves the batch"),
    "reduce_over_channels": ([node("ReduceMean", ["x", "a"])], (3, 4, 4), {"a": np.array([1], np.int64)},
                             "spatial axes", 18),
    "pad_wrap": ([node("Pad", ["x", "p"], mode="wrap")], (2, 3, 3),
                 {"p": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}, "mode 'wrap'", 19),
    "pad_channels": ([node("Pad", ["x", "p"])], (2, 3, 3), {"p": np.array([0, 1, 0, 0, 0, 0, 0, 0], np.int64)},
                     "only spatial padding"),
    "concat_batch": ([helper.make_node("Relu", ["x"], ["r"]), node("Concat", ["x", "r"], axis=0)], (2, 3), {},
                     "batch axis"),
    "avgpool_asym_exclude": ([node("AveragePool", ["x"], kernel_shape=[2, 2], pads=[1, 0, 0, 0])], (2, 4, 4), {},
                             "count_include_pad=0"),
    "gemm_transA": ([node("Gemm", ["x", "W"], transA=1)], (3,), {"W": w(3, 3)}, "transA=1"),
}


@pytest.mark.parametrize("case", sorted(UNSUPPORTED))
def test_unsupported_attribute_values_name_node_and_problem(case, tmp_path):
    spec = UNSUPPORTED[case]
    nodes, shape, inits, message = spec[:4]
    opset = spec[4] if len(spec) > 4 else 17
    path = save(model(nodes, shape, inits=inits, opset=opset), tmp_path / f"{case}.onnx")
    with pytest.raises(ValueError, match=message) as e:
        pox.load(path)
    assert str(path) in str(e.value)


def test_unsupported_ops_are_listed_with_their_nodes_and_the_supported_list(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="ok"), helper.make_node("Selu", ["a"], ["b"], name="s1"),
             helper.make_node("LRN", ["b"], ["y"], name="lrn1", size=3)]
    path = save(model(nodes, (3, 4, 4)), tmp_path / "u.onnx")
    with pytest.raises(ValueError) as e:
        pox.load(path)
    msg = str(e.value)
    for part in ("LRN, Selu", "Selu (node 's1')", "LRN (node 'lrn1')", "Supported: ", "Conv", "Resize", str(path)):
        assert part in msg, f"{part!r} not in {msg!r}"
