"""Tests for pyconvnet.layers (single layers) and pyconvnet.init.

Every backward is checked against central finite differences of the fake loss
sum(forward(x) * dout) in float64 (pyconvnet.layers.check_backward), parameters
included. Forward results are checked against independent NumPy formulas written
here (naive loops where it matters), never against the layer itself."""
from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pyconvnet.init as init
from pyconvnet import layers as L
from pyconvnet.layers import check_backward, layer_from_config

F64 = np.float64


# Finite differences run thousands of tiny kernels: single-threaded (see conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def away_from_zero(rng, shape, lo=0.1):
    """Values with |v| >= lo: no ReLU / LeakyReLU kinks within the finite-difference step."""
    return rng.choice([-1.0, 1.0], size=shape) * rng.uniform(lo, 1.0, size=shape)


def distinct(rng, shape):
    """A permutation of well separated values: no max-pool ties."""
    n = int(np.prod(shape))
    return (rng.permutation(n).reshape(shape) * 0.1 - n * 0.05).astype(F64)


# ------------------------------------------------------------------ gradient checks
GRAD_CASES = {
    "linear": (lambda: L.Linear(5, 4, seed=1, dtype=F64), (3, 5)),
    "linear_3d_nobias": (lambda: L.Linear(4, 3, bias=False, seed=1, dtype=F64), (2, 3, 4)),
    "conv_nonsquare_stride": (lambda: L.Conv2d(3, 4, (3, 2), stride=(2, 1), padding=(1, 0), seed=1, dtype=F64),
                              (2, 3, 7, 6)),
    "conv_stride_gt_kernel": (lambda: L.Conv2d(2, 3, 2, stride=3, seed=1, dtype=F64), (2, 2, 8, 7)),
    "conv_dilation_same": (lambda: L.Conv2d(2, 3, 3, padding="same", dilation=2, seed=1, dtype=F64), (1, 2, 7, 6)),
    "conv_same_even_kernel": (lambda: L.Conv2d(2, 2, (2, 4), padding="same", seed=1, dtype=F64), (2, 2, 5, 6)),
    "conv_groups": (lambda: L.Conv2d(4, 6, 3, padding=1, groups=2, seed=1, dtype=F64), (2, 4, 5, 5)),
    "conv_depthwise": (lambda: L.Conv2d(3, 6, 3, groups=3, seed=1, dtype=F64), (2, 3, 5, 6)),
    "conv_pointwise_nobias": (lambda: L.Conv2d(4, 3, 1, bias=False, seed=1, dtype=F64), (2, 4, 3, 5)),
    "convT_stride_outpad": (lambda: L.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1, seed=1,
                                                      dtype=F64), (2, 3, 4, 3)),
    "convT_groups_dilation": (lambda: L.ConvTranspose2d(4, 6, (2, 3), groups=2, dilation=2, seed=1, dtype=F64),
                              (1, 4, 3, 4)),
    "avgpool_pad": (lambda: L.AvgPool2d(3, stride=2, padding=1), (2, 2, 6, 7)),
    "avgpool_ceil_nopadcount": (lambda: L.AvgPool2d(2, padding=1, ceil_mode=True, count_include_pad=False),
                                (1, 2, 5, 6)),
    "bn1d_train": (lambda: L.BatchNorm1d(4, dtype=F64), (6, 4)),
    "bn1d_3d_train": (lambda: L.BatchNorm1d(3, dtype=F64), (4, 3, 5)),
    "bn2d_train": (lambda: L.BatchNorm2d(3, dtype=F64), (3, 3, 4, 4)),
    "bn2d_noaffine": (lambda: L.BatchNorm2d(2, affine=False, dtype=F64), (2, 2, 3, 3)),
    "bn2d_noscale": (lambda: L.BatchNorm2d(3, scale=False, dtype=F64), (3, 3, 4, 4)),
    "sigmoid": (lambda: L.Sigmoid(), (3, 7)),
    "tanh": (lambda: L.Tanh(), (3, 7)),
    "softmax": (lambda: L.Softmax(), (3, 5)),
    "softmax_last_axis": (lambda: L.Softmax(axis=-1), (2, 3, 4)),
    "identity": (lambda: L.Identity(), (2, 3)),
    "flatten": (lambda: L.Flatten(), (2, 3, 2, 2)),
    "upsample_int": (lambda: L.Upsample(scale_factor=2), (1, 2, 3, 4)),
    "upsample_size": (lambda: L.Upsample(size=(5, 7)), (1, 2, 3, 4)),
    "upsample_down": (lambda: L.Upsample(size=(2, 3)), (1, 2, 5, 7)),
    "upsample_float": (lambda: L.Upsample(scale_factor=(1.5, 2)), (2, 1, 3, 3)),
    "pixel_shuffle": (lambda: L.PixelShuffle(2), (2, 8, 2, 3)),
    "pixel_unshuffle": (lambda: L.PixelUnshuffle(2), (2, 2, 4, 6)),
}


@pytest.mark.parametrize("case", sorted(GRAD_CASES))
def test_backward_matches_finite_differences(case):
    make, shape = GRAD_CASES[case]
    layer = make()
    x = np.random.default_rng(3).standard_normal(shape)
    check_backward(layer, x, training=True)
    check_backward(layer, x, training=False)


@pytest.mark.parametrize("layer", [L.ReLU(), L.LeakyReLU(0.2)], ids=["relu", "leaky_relu"])
def test_backward_piecewise_linear(layer):
    x = away_from_zero(np.random.default_rng(0), (3, 4, 5))
    check_backward(layer, x)


@pytest.mark.parametrize("kw", [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1),
                                dict(kernel_size=(2, 3), stride=(1, 2), dilation=2),
                                dict(kernel_size=2, stride=2, ceil_mode=True)])
def test_maxpool_backward(kw):
    x = distinct(np.random.default_rng(0), (2, 2, 7, 7))
    check_backward(L.MaxPool2d(**kw), x)


def test_bn_eval_backward_and_elementwise_small():
    bn = L.BatchNorm2d(2, dtype=F64)
    rng = np.random.default_rng(1)
    for _ in range(3):
        bn.forward(rng.standard_normal((4, 2, 3, 3)) * 2 + 1, training=True)
    bn.load_state_dict({"weight": np.array([1.5, -0.5]), "bias": np.array([0.1, 0.2])}, strict=False)
    check_backward(bn, rng.standard_normal((2, 2, 2, 2)), training=False, max_elements=100)


def test_multi_input_layers_backward():
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((2, c, 3, 3)) for c in (1, 3, 2)]
    check_backward(L.Concat(), xs)
    check_backward(L.Concat(axis=-1), [rng.standard_normal((2, 3, k)) for k in (1, 4)])
    check_backward(L.Add(), [rng.standard_normal((2, 3, 4)) for _ in range(3)])


def test_elementwise_check_on_tiny_conv():
    layer = L.Conv2d(2, 2, (2, 3), stride=(1, 2), padding=(1, 1), seed=5, dtype=F64)
    x = np.random.default_rng(2).standard_normal((1, 2, 3, 4))
    check_backward(layer, x, max_elements=1000)  # every element of x, weight and bias


def test_gradcheck_catches_a_wrong_backward():
    class Wrong(L.Sigmoid):
        def backward(self, grad_y):
            return 1.01 * super().backward(grad_y)

    with pytest.raises(AssertionError, match="finite differences"):
        check_backward(Wrong(), np.random.default_rng(0).standard_normal((2, 3)))


# ------------------------------------------------------------------ forward against independent formulas
def naive_conv2d(x, w, b, stride, pad, dil, groups):
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    oh = (h + 2 * pad[0] - dil[0] * (kh - 1) - 1) // stride[0] + 1
    ow = (wd + 2 * pad[1] - dil[1] * (kw - 1) - 1) // stride[1] + 1
    y = np.zeros((n, o, oh, ow))
    og = o // groups
    for ni in range(n):
        for oc in range(o):
            g = oc // og
            for i in range(oh):
                for j in range(ow):
                    acc = b[oc] if b is not None else 0.0
                    for ci in range(cg):
                        for ki in range(kh):
                            for kj in range(kw):
                                acc += w[oc, ci, ki, kj] * xp[ni, g * cg + ci, i * stride[0] + ki * dil[0],
                                                               j * stride[1] + kj * dil[1]]
                    y[ni, oc, i, j] = acc
    return y


def test_conv2d_forward_matches_naive_loops():
    rng = np.random.default_rng(0)
    layer = L.Conv2d(4, 6, (3, 2), stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=2, seed=0, dtype=F64)
    layer.load_state_dict({"weight": rng.standard_normal((6, 2, 3, 2)), "bias": rng.standard_normal(6)})
    x = rng.standard_normal((2, 4, 6, 5))
    want = naive_conv2d(x, layer.params["weight"], layer.params["bias"], (2, 1), (1, 2), (1, 2), 2)
    np.testing.assert_allclose(layer.forward(x), want, rtol=1e-12, atol=1e-12)


def test_conv_transpose_is_adjoint_of_conv():
    rng = np.random.default_rng(1)
    conv = L.Conv2d(3, 4, 3, stride=2, padding=1, bias=False, seed=0, dtype=F64)
    convt = L.ConvTranspose2d(4, 3, 3, stride=2, padding=1, bias=False, seed=0, dtype=F64)
    convt.load_state_dict({"weight": conv.params["weight"]})
    x = rng.standard_normal((2, 3, 7, 7))
    y = conv.forward(x)
    g = rng.standard_normal(y.shape)
    # <conv(x), g> == <x, conv_transpose(g)>
    np.testing.assert_allclose(np.sum(y * g), np.sum(x * convt.forward(g)), rtol=1e-12)


def test_linear_forward_and_bias_flag():
    rng = np.random.default_rng(0)
    lin = L.Linear(3, 2, dtype=F64, seed=0)
    x = rng.standard_normal((4, 3))
    np.testing.assert_allclose(lin.forward(x), x @ lin.params["weight"].T + lin.params["bias"], rtol=1e-13)
    assert list(L.Linear(3, 2, bias=False).params) == ["weight"]


def test_pool_forward_against_loops():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 6, 4))
    y = L.MaxPool2d(2).forward(x)
    want = np.array([[[[x[0, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2].max() for j in range(2)] for i in range(3)]
                      for c in range(2)]])
    np.testing.assert_array_equal(y, want)
    ya = L.AvgPool2d((3, 2), stride=(3, 2)).forward(x)
    want = np.array([[[[x[0, c, 3 * i:3 * i + 3, 2 * j:2 * j + 2].mean() for j in range(2)] for i in range(2)]
                      for c in range(2)]])
    np.testing.assert_allclose(ya, want, rtol=1e-13)


def test_activations_forward():
    x = np.array([-800.0, -30.0, -1.0, 0.0, 2.0, 800.0])
    np.testing.assert_array_equal(L.ReLU().forward(x), [0, 0, 0, 0, 2, 800])
    np.testing.assert_allclose(L.LeakyReLU(0.1).forward(x), [-80, -3, -0.1, 0, 2, 800])
    s = L.Sigmoid().forward(x)  # no overflow warning (warnings are errors), exact in the tails
    np.testing.assert_allclose(s, [np.exp(-800.0), np.exp(-30) / (1 + np.exp(-30)), 1 / (1 + np.e), 0.5,
                                   1 / (1 + np.exp(-2.0)), 1.0], rtol=1e-14)
    np.testing.assert_allclose(L.Tanh().forward(x), np.tanh(x))
    # ReLU's derivative at exactly 0 is 0 (Kyoto Univ. exercise, eq. 25)
    relu = L.ReLU()
    relu.forward(np.array([0.0, 1.0]))
    np.testing.assert_array_equal(relu.backward(np.array([5.0, 5.0])), [0.0, 5.0])


def test_softmax_forward_sums_to_one_and_is_stable():
    x = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    y = L.Softmax().forward(x)
    assert np.all(np.isfinite(y))
    np.testing.assert_allclose(y.sum(axis=1), 1.0)
    np.testing.assert_allclose(y[1], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum())


def test_float32_default_and_dtype_preserved():
    x = np.random.default_rng(0).standard_normal((2, 3, 6, 6)).astype(np.float32)
    for layer in [L.Conv2d(3, 4, 3), L.ConvTranspose2d(3, 2, 2, stride=2), L.BatchNorm2d(3), L.MaxPool2d(2),
                  L.AvgPool2d(2), L.ReLU(), L.Sigmoid(), L.Tanh(), L.LeakyReLU(), L.Dropout(0.5, seed=0),
                  L.Upsample(scale_factor=2), L.Upsample(size=(7, 9)), L.PixelShuffle(1), L.Flatten()]:
        for p in layer.params.values():
            assert p.dtype == np.float32
        for training in (False, True):
            y = layer.forward(x, training=training)
            assert y.dtype == np.float32, type(layer).__name__
            assert layer.backward(np.ones_like(y)).dtype == np.float32, type(layer).__name__


def test_dtype_mismatch_names_x():
    with pytest.raises(TypeError, match=r"^x: expected dtype float32"):
        L.Linear(3, 2).forward(np.zeros((1, 3)))
    with pytest.raises(TypeError, match=r"^x: expected a float32 or float64"):
        L.ReLU().forward(np.zeros((2, 2), dtype=np.int32))


def test_astype_converts_everything():
    bn = L.BatchNorm2d(3)
    bn.astype(np.float64)
    assert all(v.dtype == F64 for v in list(bn.params.values()) + list(bn.grads.values()))
    assert bn.buffers["running_mean"].dtype == F64 and bn.buffers["num_batches_tracked"].dtype == np.int64
    assert bn.config()["args"]["dtype"] == "float64"
    bn.forward(np.ones((2, 3, 2, 2)), training=True)


# ------------------------------------------------------------------ batch norm behaviour
def test_batchnorm_train_uses_batch_stats_and_updates_running_stats():
    rng = np.random.default_rng(0)
    bn = L.BatchNorm2d(3, momentum=0.2, dtype=F64)
    x = rng.standard_normal((5, 3, 4, 4)) * np.array([1.0, 3.0, 0.5])[None, :, None, None] + 2.0
    y = bn.forward(x, training=True)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0.0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1.0, rtol=1e-3)  # eps shrinks it slightly
    m = x.mean(axis=(0, 2, 3))
    v_unbiased = x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(bn.buffers["running_mean"], 0.8 * 0.0 + 0.2 * m, rtol=1e-12)
    np.testing.assert_allclose(bn.buffers["running_var"], 0.8 * 1.0 + 0.2 * v_unbiased, rtol=1e-12)
    assert int(bn.buffers["num_batches_tracked"]) == 1


def test_batchnorm_eval_is_seed_eq38_and_leaves_stats_alone():
    rng = np.random.default_rng(1)
    bn = L.BatchNorm1d(4, eps=1e-3, dtype=F64)
    for _ in range(4):
        bn.forward(rng.standard_normal((8, 4)) * 2 - 1, training=True)
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    bn.load_state_dict({"weight": gamma, "bias": beta}, strict=False)
    before = bn.state_dict()
    x = rng.standard_normal((3, 4))
    ex, var = before["running_mean"], before["running_var"]
    want = gamma / np.sqrt(var + 1e-3) * x + (beta - gamma * ex / np.sqrt(var + 1e-3))  # eq. 38
    np.testing.assert_allclose(bn.forward(x), want, rtol=1e-12)
    # a single sample works in eval mode (no batch statistics needed)
    np.testing.assert_allclose(bn.forward(x[:1]), want[:1], rtol=1e-12)
    for k, v in bn.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_batchnorm_momentum_none_is_the_average_of_batch_statistics():
    rng = np.random.default_rng(2)
    bn = L.BatchNorm1d(2, momentum=None, dtype=F64)
    batches = [rng.standard_normal((6, 2)) * (i + 1) + i for i in range(5)]
    for b in batches:
        bn.forward(b, training=True)
    np.testing.assert_allclose(bn.buffers["running_mean"], np.mean([b.mean(0) for b in batches], axis=0), rtol=1e-12)
    np.testing.assert_allclose(bn.buffers["running_var"], np.mean([b.var(0, ddof=1) for b in batches], axis=0),
                               rtol=1e-12)
    assert int(bn.buffers["num_batches_tracked"]) == 5


def test_batchnorm_errors():
    with pytest.raises(ValueError, match="^x: expected 3 channels"):
        L.BatchNorm2d(3).forward(np.zeros((2, 4, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"^x: expected a \(N, C, H, W\)"):
        L.BatchNorm2d(3).forward(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="^x: training batch norm needs more than 1 value"):
        L.BatchNorm1d(3).forward(np.zeros((1, 3), np.float32), training=True)
    with pytest.raises(ValueError, match="^momentum"):
        L.BatchNorm1d(3, momentum=1.5)
    with pytest.raises(ValueError, match="^eps"):
        L.BatchNorm1d(3, eps=0)


# ------------------------------------------------------------------ dropout
def test_dropout_train_and_test():
    x = np.ones((200, 500), np.float32)
    d = L.Dropout(0.3, seed=0)
    assert d.forward(x) is x  # identity at test time
    y = d.forward(x, training=True)
    kept = y != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.7, rtol=1e-6)  # inverted dropout: survivors scaled by 1/(1-p)
    assert abs(y.mean() - 1.0) < 0.01  # the mean is preserved
    g = d.backward(np.full_like(x, 2.0))
    np.testing.assert_array_equal(g != 0, kept)  # the same mask
    np.testing.assert_allclose(g[kept], 2 / 0.7, rtol=1e-6)
    assert not np.array_equal(d.forward(x, training=True) != 0, kept)  # a fresh mask per call


def test_dropout_seeded_masks_repeat():
    x = np.random.default_rng(0).standard_normal((4, 50))
    a, b = L.Dropout(0.5, seed=7), L.Dropout(0.5, rng=np.random.default_rng(7))
    for _ in range(3):
        np.testing.assert_array_equal(a.forward(x, training=True), b.forward(x, training=True))
    assert a.config() == {"class": "Dropout", "args": {"p": 0.5, "seed": 7}}


def test_dropout_set_rng_reseeds_through_containers():
    x = np.ones((4, 30))
    m = L.Sequential(L.Dropout(0.5, seed=1), L.Identity(), L.Dropout(0.5, seed=2))
    m.set_rng(np.random.default_rng(9))
    first = m.forward(x, training=True)
    m.set_rng(9)  # an int seed works too
    np.testing.assert_array_equal(m.forward(x, training=True), first)
    ref = L.Dropout(0.5, seed=9)
    np.testing.assert_array_equal(first != 0, (ref.forward(ref.forward(x, training=True), training=True)) != 0)


def test_dropout_edge_probabilities():
    x = np.random.default_rng(0).standard_normal((3, 4))
    np.testing.assert_array_equal(L.Dropout(0.0, seed=0).forward(x, training=True), x)
    d = L.Dropout(1.0, seed=0)
    np.testing.assert_array_equal(d.forward(x, training=True), 0.0)
    np.testing.assert_array_equal(d.backward(np.ones_like(x)), 0.0)
    with pytest.raises(ValueError, match="^p:"):
        L.Dropout(1.5)


# ------------------------------------------------------------------ reshaping layers
@given(n=st.integers(1, 2), c=st.integers(1, 3), r=st.integers(1, 3), h=st.integers(1, 4), w=st.integers(1, 4))
def test_pixel_shuffle_formula_and_inverse(n, c, r, h, w):
    x = np.random.default_rng(n * 1000 + c * 100 + r * 10 + h).standard_normal((n, c * r * r, h, w))
    ps = L.PixelShuffle(r)
    y = ps.forward(x)
    assert y.shape == (n, c, h * r, w * r)
    for ci in range(c):
        for i in range(r):
            for j in range(r):
                np.testing.assert_array_equal(y[:, ci, i::r, j::r], x[:, ci * r * r + i * r + j])
    np.testing.assert_array_equal(L.PixelUnshuffle(r).forward(y), x)
    np.testing.assert_array_equal(ps.backward(y), x)  # a permutation: its adjoint is its inverse


@given(h=st.integers(1, 6), w=st.integers(1, 6), oh=st.integers(1, 12), ow=st.integers(1, 12))
def test_upsample_size_formula_and_adjoint(h, w, oh, ow):
    rng = np.random.default_rng(h * 1000 + w * 100 + oh * 10 + ow)
    x = rng.standard_normal((2, 2, h, w))
    up = L.Upsample(size=(oh, ow))
    y = up.forward(x)
    assert y.shape == (2, 2, oh, ow)
    for i in range(oh):
        for j in range(ow):
            np.testing.assert_array_equal(y[:, :, i, j], x[:, :, (i * h) // oh, (j * w) // ow])
    g = rng.standard_normal(y.shape)
    np.testing.assert_allclose(np.sum(y * g), np.sum(x * up.backward(g)), rtol=1e-12)


@given(s=st.integers(1, 4), t=st.integers(1, 4))
def test_upsample_integer_scale_is_repeat_and_strided_slice_inverts(s, t):
    x = np.random.default_rng(s * 10 + t).standard_normal((1, 3, 3, 2))
    up = L.Upsample(scale_factor=(s, t))
    y = up.forward(x)
    np.testing.assert_array_equal(y, np.repeat(np.repeat(x, s, axis=2), t, axis=3))
    np.testing.assert_array_equal(y[:, :, ::s, ::t], x)
    np.testing.assert_allclose(up.backward(np.ones_like(y)), np.full_like(x, s * t))


def test_upsample_float_scale_shape():
    assert L.Upsample(scale_factor=1.5).forward(np.zeros((1, 1, 5, 4))).shape == (1, 1, 7, 6)
    assert L.Upsample(scale_factor=0.5).forward(np.zeros((1, 1, 5, 4))).shape == (1, 1, 2, 2)


def test_flatten_and_concat_shapes():
    x = np.zeros((2, 3, 4, 5))
    assert L.Flatten().forward(x).shape == (2, 60)
    assert L.Flatten(start_dim=2).forward(x).shape == (2, 3, 20)
    cat = L.Concat()
    y = cat.forward([np.zeros((2, 1, 4, 4)), np.ones((2, 3, 4, 4))])
    assert y.shape == (2, 4, 4, 4)
    parts = cat.backward(np.arange(y.size, dtype=F64).reshape(y.shape))
    assert [p.shape for p in parts] == [(2, 1, 4, 4), (2, 3, 4, 4)]
    np.testing.assert_array_equal(np.concatenate(parts, axis=1), np.arange(y.size).reshape(y.shape))


# ------------------------------------------------------------------ the Layer contract
def test_backward_before_forward_raises():
    for layer in [L.Linear(2, 2), L.Conv2d(1, 1, 1), L.ReLU(), L.MaxPool2d(2), L.BatchNorm1d(2), L.Dropout(),
                  L.Concat(), L.Upsample(scale_factor=2)]:
        with pytest.raises(RuntimeError, match="before forward"):
            layer.backward(np.zeros((1, 2), np.float32))


def test_backward_overwrites_grads_and_zero_grad():
    rng = np.random.default_rng(0)
    conv = L.Conv2d(2, 3, 3, seed=0, dtype=F64)
    x = rng.standard_normal((2, 2, 5, 5))
    g = rng.standard_normal(conv.forward(x).shape)
    arrays = {k: id(v) for k, v in conv.grads.items()}
    conv.backward(g)
    first = {k: v.copy() for k, v in conv.grads.items()}
    conv.backward(g)
    for k, v in conv.grads.items():
        np.testing.assert_array_equal(v, first[k])  # overwritten, not accumulated
        assert id(v) == arrays[k]  # the same arrays, updated in place
    assert list(conv.params) == list(conv.grads) == ["weight", "bias"]
    assert all(conv.params[k].shape == conv.grads[k].shape for k in conv.params)
    conv.zero_grad()
    assert all(not v.any() for v in conv.grads.values())
    assert [n for n, _, _ in conv.parameters()] == ["weight", "bias"]


def test_state_dict_is_a_copy_and_load_is_in_place():
    lin = L.Linear(3, 2, seed=0)
    sd = lin.state_dict()
    sd["weight"][...] = 7
    assert not np.any(lin.params["weight"] == 7)
    w = lin.params["weight"]
    lin.load_state_dict(sd)
    assert lin.params["weight"] is w and np.all(w == 7)
    lin.load_state_dict({"weight": np.ones((2, 3)), "bias": np.zeros(2)})  # float64 is cast to float32
    assert w.dtype == np.float32 and np.all(w == 1)


def test_load_state_dict_errors_are_clear_and_atomic():
    bn = L.BatchNorm2d(2)
    good = bn.state_dict()
    with pytest.raises(ValueError, match=r"missing keys \['running_var'\]"):
        bn.load_state_dict({k: v for k, v in good.items() if k != "running_var"})
    with pytest.raises(ValueError, match=r"unexpected keys \['extra'\]"):
        bn.load_state_dict({**good, "extra": np.zeros(1)})
    bad = {**good, "weight": np.full(2, 5.0), "bias": np.zeros(3)}
    with pytest.raises(ValueError, match=r"state\['bias'\]: expected shape \(2,\), got \(3,\)"):
        bn.load_state_dict(bad)
    assert np.all(bn.params["weight"] == 1)  # nothing was loaded
    with pytest.raises(TypeError, match=r"state\['num_batches_tracked'\]"):
        bn.load_state_dict({**good, "num_batches_tracked": np.array(1.5)})
    missing, unexpected = bn.load_state_dict({"weight": np.full(2, 3.0), "junk": np.zeros(1)}, strict=False)
    assert "bias" in missing and unexpected == ["junk"] and np.all(bn.params["weight"] == 3)
    with pytest.raises(TypeError, match="^state: expected a mapping"):
        bn.load_state_dict([1, 2])


ROUND_TRIP = [
    (lambda: L.Linear(6, 3, seed=1), (2, 6)),
    (lambda: L.Conv2d(4, 4, (3, 1), padding="same", groups=4, bias=False, init="kaiming_uniform",
                      seed=1), None),
    (lambda: L.ConvTranspose2d(4, 2, 3, stride=2, output_padding=1, init="xavier_normal", bias_init="normal_fan_in",
                               seed=1), None),
    (lambda: L.BatchNorm2d(4, momentum=None, eps=1e-3), None),
    (lambda: L.MaxPool2d(3, stride=2, padding=1, ceil_mode=True), None),
    (lambda: L.AvgPool2d(2, count_include_pad=False), None),
    (lambda: L.Upsample(size=(9, 11)), None),
    (lambda: L.Upsample(scale_factor=(2, 1.5)), None),
    (lambda: L.PixelShuffle(2), None),
    (lambda: L.LeakyReLU(0.3), None),
    (lambda: L.Softmax(axis=-1), None),
    (lambda: L.Dropout(0.25, seed=3), None),
    (lambda: L.Flatten(2), None),
]


@pytest.mark.parametrize("i", range(len(ROUND_TRIP)))
def test_config_and_state_dict_rebuild_identical_layer(i):
    make, shape = ROUND_TRIP[i]
    layer = make()
    rng = np.random.default_rng(i)
    x = rng.standard_normal(shape or (2, 4, 6, 6)).astype(np.float32)
    if layer.buffers:
        layer.forward(x, training=True)  # move the running stats away from their defaults
    for p in layer.params.values():
        p += rng.standard_normal(p.shape).astype(p.dtype)  # "trained" weights
    cfg = json.loads(json.dumps(layer.config()))
    clone = layer_from_config(cfg)
    assert type(clone) is type(layer) and clone.config() == cfg
    clone.load_state_dict(layer.state_dict())
    np.testing.assert_array_equal(clone.forward(x), layer.forward(x))  # bit for bit
    if not isinstance(layer, L.Dropout):
        assert json.dumps(layer_from_config(json.dumps(cfg)).config()) == json.dumps(cfg)


def test_config_of_custom_init_callable_rebuilds():
    lin = L.Linear(3, 2, init=lambda shape, rng, **kw: np.full(shape, 0.5))
    assert np.all(lin.params["weight"] == 0.5)
    assert lin.config()["args"]["init"] is None  # recorded as the default: weights come from the state_dict
    assert layer_from_config(lin.config()).params["weight"].shape == (2, 3)


def test_layer_from_config_errors():
    with pytest.raises(ValueError, match="unknown layer class 'Nope'"):
        layer_from_config({"class": "Nope", "args": {}})
    with pytest.raises(ValueError, match="^cfg: expected a dict"):
        layer_from_config([1])
    with pytest.raises(TypeError, match="unexpected keyword"):
        layer_from_config({"class": "ReLU", "args": {"bogus": 1}})


BAD_ARGS = [
    (lambda: L.Linear(0, 3), ValueError, "^in_features"),
    (lambda: L.Linear(2.5, 3), TypeError, "^in_features"),
    (lambda: L.Linear(3, 2, bias=1), TypeError, "^bias"),
    (lambda: L.Conv2d(3, 4, 0), ValueError, "^kernel_size"),
    (lambda: L.Conv2d(3, 4, 3, groups=2), ValueError, "^groups"),
    (lambda: L.Conv2d(3, 4, 3, stride=2, padding="same"), ValueError, "^padding"),
    (lambda: L.Conv2d(3, 4, 3, padding="full"), ValueError, "^padding"),
    (lambda: L.Conv2d(3, 4, (1, 2, 3)), ValueError, "^kernel_size"),
    (lambda: L.Conv2d(3, 4, 3, dtype=np.int32), TypeError, "^dtype"),
    (lambda: L.Conv2d(3, 4, 3, init="bogus"), ValueError, "^init"),
    (lambda: L.Conv2d(3, 4, 3, bias_init=3), TypeError, "^bias_init"),
    (lambda: L.Conv2d(3, 4, 3, rng="x"), TypeError, "^rng"),
    (lambda: L.Conv2d(3, 4, 3, rng=1, seed=1), ValueError, "^rng/seed"),
    (lambda: L.ConvTranspose2d(3, 4, 3, stride=2, output_padding=2), ValueError, "^output_padding"),
    (lambda: L.ConvTranspose2d(3, 4, 3, padding="same"), ValueError, "^padding"),
    (lambda: L.MaxPool2d(2, padding=2), ValueError, "^padding"),
    (lambda: L.AvgPool2d(2, ceil_mode="yes"), TypeError, "^ceil_mode"),
    (lambda: L.Upsample(), ValueError, "^size/scale_factor"),
    (lambda: L.Upsample(size=3, scale_factor=2), ValueError, "^size/scale_factor"),
    (lambda: L.Upsample(scale_factor=-1), ValueError, "^scale_factor"),
    (lambda: L.Upsample(scale_factor=2, mode="bilinear"), ValueError, "^mode"),
    (lambda: L.PixelShuffle(0), ValueError, "^upscale_factor"),
    (lambda: L.Linear(3, 2).forward(np.zeros((4, 5), np.float32)), ValueError, "^x: expected last dimension 3"),
    (lambda: L.Conv2d(3, 4, 3).forward(np.zeros((1, 2, 5, 5), np.float32)), ValueError, "^weight: expected shape"),
    (lambda: L.Conv2d(3, 4, 5).forward(np.zeros((1, 3, 3, 3), np.float32)), ValueError, "^weight: kernel"),
    (lambda: L.PixelShuffle(2).forward(np.zeros((1, 3, 2, 2))), ValueError, "^x: the 3 channels"),
    (lambda: L.Upsample(scale_factor=2).forward(np.zeros((3, 2, 2))), ValueError, r"^x: expected an \(N, C, H, W\)"),
    (lambda: L.Concat().forward(np.zeros((2, 2))), TypeError, "^xs: Concat takes a list"),
    (lambda: L.Concat().forward([np.zeros((2, 2)), np.zeros((3, 2))]), ValueError, r"^xs\[1\]: shape"),
    (lambda: L.Add().forward([np.zeros((2, 2)), np.zeros((2, 1))]), ValueError, r"^xs\[1\]: expected shape"),
    (lambda: L.Add().forward([np.zeros(2), np.zeros(2, np.float32)]), TypeError, r"^xs\[1\]: expected dtype"),
    (lambda: L.Flatten().forward(np.zeros(3)), ValueError, "^x: expected more than 1"),
]


@pytest.mark.parametrize("i", range(len(BAD_ARGS)))
def test_bad_arguments_raise_naming_the_argument(i):
    call, exc, pattern = BAD_ARGS[i]
    with pytest.raises(exc, match=pattern):
        call()


def test_backward_rejects_wrong_grad_shape():
    relu = L.ReLU()
    relu.forward(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"^grad_y: expected shape \(2, 3\)"):
        relu.backward(np.ones((3, 2)))
    conv = L.Conv2d(1, 1, 3)
    conv.forward(np.ones((1, 1, 5, 5), np.float32))
    with pytest.raises(ValueError, match="^grad_out: expected shape"):
        conv.backward(np.ones((1, 1, 5, 5), np.float32))


# ------------------------------------------------------------------ pyconvnet.init
def test_init_seeded_reproducible_and_shared_generator():
    a = L.Conv2d(3, 8, 3, seed=42)
    b = L.Conv2d(3, 8, 3, rng=42)
    np.testing.assert_array_equal(a.params["weight"], b.params["weight"])
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    m1 = [L.Linear(4, 4, rng=g1), L.Linear(4, 4, rng=g1)]
    m2 = [L.Linear(4, 4, rng=g2), L.Linear(4, 4, rng=g2)]
    assert not np.array_equal(m1[0].params["weight"], m1[1].params["weight"])  # consecutive draws
    for p, q in zip(m1, m2):
        np.testing.assert_array_equal(p.params["weight"], q.params["weight"])
    # the same seed gives the same model in float32 and float64
    np.testing.assert_allclose(L.Linear(5, 3, seed=1, dtype=F64).params["weight"],
                               L.Linear(5, 3, seed=1).params["weight"], rtol=1e-6)


@pytest.mark.parametrize("name,std", [
    ("normal_fan_in", lambda fi, fo: 1 / np.sqrt(fi)),
    ("kaiming_normal", lambda fi, fo: np.sqrt(2 / fi)),
    ("kaiming_uniform", lambda fi, fo: np.sqrt(2 / fi)),
    ("he_uniform", lambda fi, fo: np.sqrt(2 / fi)),
    ("xavier_normal", lambda fi, fo: np.sqrt(2 / (fi + fo))),
    ("glorot_uniform", lambda fi, fo: np.sqrt(2 / (fi + fo))),
])
def test_initialiser_statistics(name, std):
    shape = (64, 32, 3, 3)  # fan_in 288, fan_out 576
    w = init.get(name)(shape, np.random.default_rng(0))
    assert w.dtype == np.float32 and w.shape == shape
    assert abs(w.mean()) < 0.01 * std(288, 576) * 10
    np.testing.assert_allclose(w.std(), std(288, 576), rtol=0.02)
    if "uniform" in name:
        assert np.abs(w).max() <= np.sqrt(3) * std(288, 576) * (1 + 1e-6)


def test_init_fans_and_constants():
    assert init.fans((10, 4)) == (4, 10)
    assert init.fans((8, 2, 3, 5)) == (30, 120)
    assert init.fans((7,)) == (7, 7)
    np.testing.assert_array_equal(init.zeros((2, 3), dtype=F64), np.zeros((2, 3)))
    np.testing.assert_array_equal(init.ones(4), np.ones(4, np.float32))
    # layers pass the fans explicitly: a normal_fan_in bias uses the weight's fan_in
    lin = L.Linear(400, 3, bias_init="normal_fan_in", seed=0, dtype=F64)
    assert np.abs(lin.params["bias"]).max() < 5 / np.sqrt(400)
    with pytest.raises(ValueError, match="^mode"):
        init.kaiming_normal((3, 3), 0, mode="fan_avg")
    with pytest.raises(ValueError, match="^seed"):
        init.as_rng(-1)


def test_sequential_need_input_grad_skips_leading_layers():
    """need_input_grad=False reaches the first layer with parameters (past Flatten);
    backward then returns None and the parameter gradients are unchanged."""
    from pyconvnet import models

    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    g = rng.standard_normal((4, 10)).astype(np.float32)
    net = models.mlp3(hidden=16)
    net.forward(x, training=True)
    gx = net.backward(g)
    grads = {k: v.copy() for k, v in net.grads.items()}
    assert gx.shape == x.shape
    net.need_input_grad = False
    assert net[0].need_input_grad is False and net[1].need_input_grad is False
    assert net[2].need_input_grad is True  # after the first parameter layer: untouched
    net.forward(x, training=True)
    assert net.backward(g) is None
    for k, v in net.grads.items():
        np.testing.assert_array_equal(v, grads[k], err_msg=k)
    net.need_input_grad = True
    assert net[0].need_input_grad is True and net[1].need_input_grad is True
    net.forward(x, training=True)
    assert net.backward(g).shape == x.shape


# ------------------------------------------------------------------ train() / eval() modes
def test_train_eval_modes_drive_call_and_forward_keeps_working():
    """model.train() / model.eval() as in torch: model(x) follows the mode, every layer
    inside follows the container, an explicit training= wins, forward(x, training) is as before."""
    from pyconvnet import models

    x = np.ones((4, 1, 28, 28), np.float32)
    m = models.build("keras_cnn", (1, 28, 28))
    assert m.training is False and all(not l.training for _, l in m._children())
    np.testing.assert_array_equal(m(x), m.forward(x, training=False))  # a new model: eval mode
    assert m.train() is m
    assert all(l.training for _, l in m._children())
    a, b = m(x), m(x)
    assert not np.array_equal(a, b)  # dropout is on: fresh masks per call
    np.testing.assert_array_equal(m(x, training=False), m.forward(x))
    assert m.eval() is m and not m.training
    np.testing.assert_array_equal(m(x), m.forward(x, training=False))


def test_python_list_input_takes_the_layer_dtype():
    y = L.Linear(3, 2, seed=0)([[1, 2, 3]])
    assert y.dtype == np.float32 and y.shape == (1, 2)
    y64 = L.Linear(3, 2, seed=0, dtype=np.float64)([[1.0, 2.0, 3.0]])
    assert y64.dtype == np.float64
    np.testing.assert_allclose(y, y64, rtol=1e-6)
    with pytest.raises(TypeError, match=r"expected dtype float32 \(the dtype of Linear's parameters"):
        L.Linear(3, 2, seed=0)(np.ones((1, 3)))  # an explicit float64 array stays an error, not a silent cast


class _CacheProbe(L.Layer):
    """Identity that records, at each forward, whether the previous step's cache was still held."""

    def __init__(self):
        super().__init__()
        self.held_at_forward = []

    def forward(self, x, training=False):
        self.held_at_forward.append(self._cache is not None)
        if training:
            self._cache = np.array(x, copy=True)
        return x

    def backward(self, grad_y):
        self._saved()
        return grad_y


def _probe_sequential():
    a, b = _CacheProbe(), _CacheProbe()
    return L.Sequential(a, L.Sequential(b)), (a, b)


def _probe_graph():
    from pyconvnet.layers import Graph

    a, b = _CacheProbe(), _CacheProbe()
    g = Graph(inputs="x", outputs="b")
    g.add("a", a, "x")
    g.add("b", L.Sequential(b), "a")
    return g, (a, b)


@pytest.mark.parametrize("build", [_probe_sequential, _probe_graph])
def test_training_forward_drops_the_last_steps_saved_activations_first(build):
    """A training forward of a container drops every sub-layer's saved activations
    before making new ones (peak memory: one step's activations, not two); an
    inference forward keeps them, and backward after forward still works."""
    model, probes = build()
    x = np.ones((2, 3))
    for _ in range(3):
        model.forward(x, training=True)
        model.backward(np.ones((2, 3)))
    model.forward(x, training=False)
    for p in probes:
        assert p.held_at_forward == [False, False, False, True]


@pytest.mark.parametrize("cls,args", [(L.Conv2d, (3, 4, 3)), (L.ConvTranspose2d, (3, 4, 3))])
def test_conv_need_input_grad_false_skips_grad_x_only(cls, args):
    """need_input_grad=False: backward returns None for the input and the same parameter
    gradients as with it (the input-gradient convolution is skipped, nothing else)."""
    import pyconvnet.functional as F

    rng = np.random.default_rng(3)
    layer = cls(*args, stride=2, rng=rng, dtype=np.float64)
    x = rng.standard_normal((2, 3, 7, 7))
    y = layer.forward(x, training=True)
    g = rng.standard_normal(y.shape)
    gx = layer.backward(g)
    full = {k: v.copy() for k, v in layer.grads.items()}
    assert gx.shape == x.shape
    layer.need_input_grad = False
    layer.forward(x, training=True)
    assert layer.backward(g) is None
    for k, v in layer.grads.items():
        np.testing.assert_array_equal(v, full[k], err_msg=k)
    if cls is L.ConvTranspose2d:
        w = layer.params["weight"]
        none, gw, gb = F.conv_transpose2d_backward(g[0], x[0], w, stride=2, need_grad_x=False)
        gx1, gw1, gb1 = F.conv_transpose2d_backward(g[0], x[0], w, stride=2)
        assert none is None and gx1.shape == x[0].shape
        np.testing.assert_array_equal(gw, gw1)
        np.testing.assert_array_equal(gb, gb1)
