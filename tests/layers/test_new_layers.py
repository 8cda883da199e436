"""The layers added for ONNX import and export: GELU, Erf, Hardtanh / ReLU6, LogSoftmax, the
adaptive / global pools, Pad2d, Reshape, Transpose, ConstantArith and Elementwise. Backward
against float64 finite differences, forward against torch's modules where they exist, config
round trips, bad arguments."""
from __future__ import annotations

import numpy as np
import pytest

from pyconvnet import layers as L
from pyconvnet.layers import check_backward, layer_from_config

pytestmark = pytest.mark.usefixtures("one_thread")
F64 = np.float64
rng0 = np.random.default_rng(0)

CASES = {
    "gelu": (lambda: L.GELU(), (2, 3, 4)),
    "gelu_tanh": (lambda: L.GELU("tanh"), (2, 3, 4)),
    "erf": (lambda: L.Erf(), (3, 5)),
    "hardtanh": (lambda: L.Hardtanh(-2.0, 2.5), (3, 5)),
    "relu6": (lambda: L.ReLU6(), (3, 5)),
    "log_softmax": (lambda: L.LogSoftmax(), (3, 5)),
    "log_softmax_last": (lambda: L.LogSoftmax(-1), (2, 3, 4)),
    "adaptive_avg": (lambda: L.AdaptiveAvgPool2d((2, 3)), (2, 2, 5, 7)),
    "adaptive_max": (lambda: L.AdaptiveMaxPool2d((3, None)), (2, 2, 5, 4)),
    "global_avg": (lambda: L.GlobalAvgPool2d(), (2, 3, 4, 5)),
    "global_max": (lambda: L.GlobalMaxPool2d(), (2, 3, 4, 5)),
    "pad_reflect": (lambda: L.Pad2d((2, 1, 0, 3), "reflect"), (2, 2, 4, 5)),
    "pad_replicate": (lambda: L.Pad2d(2, "replicate"), (1, 2, 3, 3)),
    "pad_crop": (lambda: L.Pad2d((-1, 2, 1, -2), value=1.5), (1, 2, 4, 5)),
    "reshape": (lambda: L.Reshape((4, -1)), (2, 3, 4, 2)),
    "transpose": (lambda: L.Transpose((0, 3, 1, 2)), (2, 3, 4, 2)),
    "const_sub_reverse": (lambda: L.ConstantArith("sub", rng0.standard_normal((3, 1, 1)), reverse=True, dtype=F64),
                          (2, 3, 2, 2)),
    "const_div": (lambda: L.ConstantArith("div", rng0.uniform(1, 2, (1, 3, 1, 4)), dtype=F64), (2, 3, 2, 4)),
    "const_pow": (lambda: L.ConstantArith("pow", 3.0, dtype=F64), (2, 5)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_backward_matches_finite_differences(case):
    make, shape = CASES[case]
    layer = make()
    rng = np.random.default_rng(3)
    n = int(np.prod(shape))
    # distinct values away from the kinks (max ties, clip points)
    x = ((rng.permutation(n) - n / 2) / (n / 6) + 0.013).reshape(shape)
    check_backward(layer, x, max_elements=200)


@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_elementwise_broadcasting_backward(op):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((2, 3, 4, 4))
    b = rng.uniform(1, 2, (2, 3, 1, 1))
    check_backward(L.Elementwise(op), [a, b])
    check_backward(L.Elementwise(op), [b, a])


def test_forward_matches_torch_modules():
    torch = pytest.importorskip("torch")
    nn = torch.nn
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 6, 5)) * 4
    xt = torch.from_numpy(x)
    pairs = [(L.GELU(), nn.GELU()), (L.GELU("tanh"), nn.GELU("tanh")), (L.ReLU6(), nn.ReLU6()),
             (L.Hardtanh(-1.5, 0.5), nn.Hardtanh(-1.5, 0.5)), (L.LogSoftmax(1), nn.LogSoftmax(1)),
             (L.AdaptiveAvgPool2d((4, 3)), nn.AdaptiveAvgPool2d((4, 3))),
             (L.AdaptiveMaxPool2d((2, 2)), nn.AdaptiveMaxPool2d((2, 2))), (L.GlobalAvgPool2d(), nn.AdaptiveAvgPool2d(1)),
             (L.Pad2d((1, 2, 3, 0)), nn.ZeroPad2d((1, 2, 3, 0))), (L.Pad2d(2, "reflect"), nn.ReflectionPad2d(2)),
             (L.Pad2d((0, 1, 2, 3), "replicate"), nn.ReplicationPad2d((0, 1, 2, 3)))]
    for ours, theirs in pairs:
        with torch.no_grad():
            np.testing.assert_allclose(ours.forward(x), theirs(xt).numpy(), rtol=1e-12, atol=1e-12,
                                       err_msg=type(ours).__name__)


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_round_trip(case):
    make, shape = CASES[case]
    layer = make()
    clone = layer_from_config(layer.config())
    clone.load_state_dict(layer.state_dict())
    x = np.random.default_rng(4).uniform(0.5, 1.5, shape)
    np.testing.assert_array_equal(clone.forward(x), layer.forward(x))


def test_constant_arith_is_a_buffer_that_converts_and_saves():
    layer = L.ConstantArith("mul", np.array([[[2.0]], [[3.0]]]))
    assert layer.constant.dtype == np.float32 and "constant" in layer.buffers and not layer.params
    layer.astype(np.float64)
    assert layer.constant.dtype == np.float64
    np.testing.assert_array_equal(layer.forward(np.ones((1, 2, 1, 1))).ravel(), [2.0, 3.0])


@pytest.mark.parametrize("make, x, match", [
    (lambda: L.ConstantArith("mul", np.ones((2, 3))), np.ones((4, 3)), "broadcast over the batch"),
    (lambda: L.ConstantArith("add", np.ones((1, 5))), np.ones((4, 3)), "does not broadcast"),
    (lambda: L.ConstantArith("add", np.ones((1, 1, 3))), np.ones((4, 3)), "broadcast over the batch"),
    (lambda: L.Reshape((5,)), np.ones((2, 6)), r"cannot reshape \(N, 6\) to \(N, 5\)"),
    (lambda: L.Transpose((0, 2, 1)), np.ones((2, 3)), "expected 3 dimensions"),
    (lambda: L.LogSoftmax(3), np.ones((2, 3)), "axis 3 is out of range"),
    (lambda: L.Pad2d(3, "reflect"), np.ones((1, 1, 3, 3)), "reflect padding must be smaller"),
])
def test_forward_bad_input(make, x, match):
    with pytest.raises(ValueError, match=match):
        make().forward(x.astype(np.float32))


@pytest.mark.parametrize("make, exc, match", [
    (lambda: L.GELU("erf"), ValueError, "approximate: expected 'none' or 'tanh'"),
    (lambda: L.Hardtanh(2, 1), ValueError, "min_val <= max_val"),
    (lambda: L.AdaptiveAvgPool2d(0), ValueError, "output_size: expected positive ints"),
    (lambda: L.Pad2d((1, 2, 3)), ValueError, r"padding: expected an int or \(left, right, top, bottom\)"),
    (lambda: L.Pad2d(1, "circular"), ValueError, "mode: expected one of"),
    (lambda: L.Pad2d(-1, "reflect"), ValueError, "negative pads"),
    (lambda: L.Reshape((-1, -1)), ValueError, "at most one -1"),
    (lambda: L.Reshape(3), TypeError, "shape: expected a tuple of ints"),
    (lambda: L.Transpose((1, 0)), ValueError, "starting with 0"),
    (lambda: L.ConstantArith("mod", 1.0), ValueError, "op: expected one of add, sub, mul, div, pow"),
    (lambda: L.ConstantArith("add"), ValueError, "give the constant"),
    (lambda: L.Elementwise("pow"), ValueError, "op: expected one of add, sub, mul, div"),
])
def test_constructor_bad_arguments(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


def test_elementwise_bad_inputs():
    with pytest.raises(ValueError, match="do not broadcast"):
        L.Elementwise("mul").forward([np.ones((2, 3)), np.ones((2, 4))])
    with pytest.raises(ValueError, match="batch sizes differ"):
        L.Elementwise("mul").forward([np.ones((2, 3)), np.ones((1, 3))])
    with pytest.raises(ValueError, match="exactly two inputs"):
        L.Elementwise("add").forward([np.ones(2)] * 3)
