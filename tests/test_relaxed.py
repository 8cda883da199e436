"""Relaxed receptive-field convolution (seed 003): kernels vs naive loops, finite
differences, bad input, the RelaxedConv layer, the bilevel search and the pictures."""
from __future__ import annotations

import json
import os
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pyconvnet
from pyconvnet import _core
from pyconvnet import functional as F
from pyconvnet import relaxed as R
from pyconvnet.layers import Flatten, Linear, ReLU, Sequential, check_backward, layer_from_config
from pyconvnet.losses import SoftmaxCrossEntropy
from pyconvnet.optim import SGD, Adam

F32, F64 = np.float32, np.float64
TOL = {np.dtype(F64): 1e-10, np.dtype(F32): 1e-4}
seeds = st.integers(0, 2**32 - 1)
dtypes = st.sampled_from([F32, F64])


def close(got, want, dtype, name=""):
    """|got - want| <= tol * (max|want| + |want|), shapes and dtype equal."""
    if want is None:
        assert got is None, name
        return
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
    assert got.dtype == np.dtype(dtype), f"{name}: dtype {got.dtype}, expected {np.dtype(dtype)}"
    tol = TOL[np.dtype(dtype)]
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    np.testing.assert_allclose(got.astype(F64), want.astype(F64), rtol=tol, atol=tol * scale, err_msg=name)


@st.composite
def sizes(draw, max_n=3, allow_empty=True):
    lo = 0 if allow_empty else 1
    return dict(N=draw(st.integers(lo, max_n)), C=draw(st.integers(1, 3)), n_in=draw(st.integers(1, 7)),
                n_out=draw(st.integers(1, 6)), k=draw(st.integers(1, 4)), O=draw(st.integers(1, 4)),
                bias=draw(st.booleans()))


def make(rng, s, dtype):
    x = rng.standard_normal((s["N"], s["C"], s["n_in"])).astype(dtype)
    L = rng.standard_normal((s["n_in"], s["n_out"], s["k"])).astype(dtype)
    w = rng.standard_normal((s["O"], s["C"], s["k"])).astype(dtype)
    b = rng.standard_normal(s["O"]).astype(dtype) if s["bias"] else None
    idx = rng.integers(-1, s["n_in"], size=(s["n_out"], s["k"]))
    return x, L, w, b, idx


def einsum_relaxed(x, L, w, b):
    y = np.einsum("ocs,nci,ijs->noj", w.astype(F64), x.astype(F64), L.astype(F64))
    return y + (0 if b is None else b.astype(F64)[None, :, None])


# ============================================================================ kernels vs naive loops
@given(s=sizes(), dtype=dtypes, seed=seeds)
def test_relaxed_conv_matches_reference(s, dtype, seed):
    rng = np.random.default_rng(seed)
    x, L, w, b, _ = make(rng, s, dtype)
    saved = [a.copy() for a in (x, L, w)]
    y = R.relaxed_conv(x, L, w, b)
    close(y, R.ref_relaxed_conv(x, L, w, b), dtype, "y")
    gy = rng.standard_normal(y.shape).astype(dtype)
    got = R.relaxed_conv_backward(gy, x, L, w)
    want = R.ref_relaxed_conv_backward(gy, x, L, w)
    for name, g, r in zip(("grad_x", "grad_L", "grad_w", "grad_bias"), got, want):
        close(g, r, dtype, name)
    for a, c in zip((x, L, w), saved):
        np.testing.assert_array_equal(a, c)  # inputs untouched
    gx, gL, gw, gb = R.relaxed_conv_backward(gy, x, L, w, need_grad_x=False, need_grad_L=False)
    assert gx is None and gL is None
    close(gw, want[2], dtype, "grad_w alone")
    # the forward's patches handed to the backward: same gradients, P = x L
    y2, P = R.relaxed_conv(x, L, w, b, return_patches=True)
    close(y2, R.ref_relaxed_conv(x, L, w, b), dtype, "y with patches")
    close(P, np.einsum("nci,ijs->cnjs", x.astype(F64), L.astype(F64)), dtype, "patches")
    got = R.relaxed_conv_backward(gy, x, L, w, patches=P)
    for name, g, r in zip(("grad_x", "grad_L", "grad_w", "grad_bias"), got, want):
        close(g, r, dtype, name + " (patches given)")


@given(s=sizes(), dtype=dtypes, seed=seeds)
def test_receptive_conv_matches_reference(s, dtype, seed):
    rng = np.random.default_rng(seed)
    x, _, w, b, idx = make(rng, s, dtype)
    y = R.receptive_conv(x, idx, w, b)
    close(y, R.ref_receptive_conv(x, idx, w, b), dtype, "y")
    gy = rng.standard_normal(y.shape).astype(dtype)
    got = R.receptive_conv_backward(gy, x, idx, w)
    want = R.ref_receptive_conv_backward(gy, x, idx, w)
    for name, g, r in zip(("grad_x", "grad_w", "grad_bias"), got, want):
        close(g, r, dtype, name)
    # the index table as a one-hot dense L gives the same op through the relaxed kernels
    L = R.index_to_L(idx, s["n_in"], dtype)
    close(R.relaxed_conv(x, L, w, b), y.astype(F64).astype(dtype), dtype, "one-hot relaxed y")
    rg = R.relaxed_conv_backward(gy, x, L, w)
    close(rg[0], got[0].astype(F64).astype(dtype), dtype, "one-hot relaxed grad_x")
    close(rg[2], got[1].astype(F64).astype(dtype), dtype, "one-hot relaxed grad_w")


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [F32, F64])
def test_large_threaded_and_blocked_paths(threads, dtype):
    """Sizes past the thread threshold, and a P block budget (4M elements) exceeded: several blocks."""
    old = pyconvnet.get_num_threads()
    pyconvnet.set_num_threads(threads)
    try:
        rng = np.random.default_rng(1)
        for (N, C, n_in, n_out, k, O) in [(9, 3, 50, 40, 9, 16), (1, 4, 60, 50, 5, 8), (40, 2, 3, 6000, 9, 2)]:
            x = rng.standard_normal((N, C, n_in)).astype(dtype)
            L = rng.standard_normal((n_in, n_out, k)).astype(dtype)
            w = rng.standard_normal((O, C, k)).astype(dtype)
            b = rng.standard_normal(O).astype(dtype)
            y = R.relaxed_conv(x, L, w, b)
            close(y, einsum_relaxed(x, L, w, b), dtype, "y")
            y2, P = R.relaxed_conv(x, L, w, b, return_patches=True)  # blocks write into P's channel rows
            close(y2, einsum_relaxed(x, L, w, b), dtype, "y (patches returned)")
            gy = rng.standard_normal(y.shape).astype(dtype)
            x64, L64, w64, g64 = (a.astype(F64) for a in (x, L, w, gy))
            dP = np.einsum("ocs,noj->ncjs", w64, g64)
            for patches in (None, P):
                gx, gL, gw, gb = R.relaxed_conv_backward(gy, x, L, w, patches=patches)
                close(gx, np.einsum("ncjs,ijs->nci", dP, L64), dtype, "grad_x")
                close(gL, np.einsum("nci,ncjs->ijs", x64, dP), dtype, "grad_L")
                close(gw, np.einsum("noj,nci,ijs->ocs", g64, x64, L64), dtype, "grad_w")
                close(gb, g64.sum(axis=(0, 2)), dtype, "grad_bias")
            idx = rng.integers(-1, n_in, size=(n_out, k))
            Lh = R.index_to_L(idx, n_in, F64)
            y2 = R.receptive_conv(x, idx, w, b)
            close(y2, einsum_relaxed(x, Lh, w, b), dtype, "receptive y")
            gx2, gw2, gb2 = R.receptive_conv_backward(gy, x, idx, w)
            dP = np.einsum("ocs,noj->ncjs", w64, g64)
            close(gx2, np.einsum("ncjs,ijs->nci", dP, Lh), dtype, "receptive grad_x")
            close(gw2, np.einsum("noj,nci,ijs->ocs", g64, x64, Lh), dtype, "receptive grad_w")
    finally:
        pyconvnet.set_num_threads(old)


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("hw,c,o,dilation", [((5, 6), 3, 4, 1), ((1, 1), 1, 2, 1), ((7, 4), 2, 3, 2),
                                             ((28, 28), 1, 8, 1)])
def test_grid_index_equals_conv2d_same(dtype, hw, c, o, dilation):
    """receptive_conv with the 3x3 grid table (index -1 = zero padding) is conv2d(..., padding=1)."""
    rng = np.random.default_rng(3)
    h, w_ = hw
    x = rng.standard_normal((3, c, h, w_)).astype(dtype)
    w = rng.standard_normal((o, c, 3, 3)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    want = F.conv2d(x, w, b, padding=dilation, dilation=dilation)
    idx = R.grid_index(h, w_, 3, dilation=dilation)
    got = R.receptive_conv(x.reshape(3, c, h * w_), idx, w.reshape(o, c, 9), b)
    close(got, want.reshape(3, o, h * w_).astype(F64).astype(dtype), dtype, "y")
    gy = rng.standard_normal(want.shape).astype(dtype)
    gx, gw, gb = F.conv2d_backward(gy, x, w, padding=dilation, dilation=dilation)
    rx, rw, rb = R.receptive_conv_backward(gy.reshape(3, o, h * w_), x.reshape(3, c, h * w_), idx,
                                           w.reshape(o, c, 9))
    close(rx, gx.reshape(rx.shape), dtype, "grad_x")
    close(rw, gw.reshape(rw.shape), dtype, "grad_w")
    close(rb, gb, dtype, "grad_bias")


def test_grid_index_layout():
    idx = R.grid_index(3, 4)
    assert idx.shape == (12, 9) and idx.dtype == np.int64
    np.testing.assert_array_equal(idx[5], [0, 1, 2, 4, 5, 6, 8, 9, 10])  # pixel (1, 1)
    np.testing.assert_array_equal(idx[0], [-1, -1, -1, -1, 0, 1, -1, 4, 5])
    np.testing.assert_array_equal(R.grid_index(3, 4, padding="clamp")[0], [0, 0, 1, 0, 0, 1, 4, 4, 5])


def test_non_contiguous_and_list_inputs():
    rng = np.random.default_rng(7)
    xb = rng.standard_normal((3, 2, 10))
    x = xb[:, :, ::2]  # strided view
    L = np.asfortranarray(rng.standard_normal((5, 4, 3)))
    w = rng.standard_normal((2, 3, 2)).transpose(0, 2, 1)  # (2, 2, 3) view
    idx = rng.integers(-1, 5, (3, 4)).T  # (4, 3), non-contiguous
    np.testing.assert_allclose(R.relaxed_conv(x, L, w), R.relaxed_conv(x.copy(), L.copy(), w.copy()), rtol=1e-13)
    np.testing.assert_array_equal(R.receptive_conv(x, idx, w), R.receptive_conv(x.copy(), idx.copy(), w.copy()))
    np.testing.assert_array_equal(R.receptive_conv(x, idx.tolist(), w), R.receptive_conv(x, idx, w))


def test_empty_sizes():
    x = np.zeros((0, 2, 5))
    L = np.ones((5, 3, 2))
    w = np.ones((4, 2, 2))
    b = np.arange(4.0)
    assert R.relaxed_conv(x, L, w, b).shape == (0, 4, 3)
    gx, gL, gw, gb = R.relaxed_conv_backward(np.zeros((0, 4, 3)), x, L, w)
    assert gx.shape == (0, 2, 5) and not gL.any() and not gw.any() and not gb.any()
    y = R.receptive_conv(np.ones((2, 2, 5)), np.full((3, 2), -1), w, b)  # all padding: only the bias
    np.testing.assert_array_equal(y, np.broadcast_to(b[None, :, None], (2, 4, 3)))


# ============================================================================ finite differences (float64)
def numeric(f, p, dout, eps=1e-6):
    g = np.zeros_like(p)
    flat, gf = p.reshape(-1), g.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = float(np.sum(f() * dout))
        flat[i] = old - eps
        dn = float(np.sum(f() * dout))
        flat[i] = old
        gf[i] = (up - dn) / (2 * eps)
    return g


def assert_grad(analytic, num, name, tol=1e-6):
    scale = np.maximum(np.maximum(np.abs(analytic), np.abs(num)), 1.0)
    bad = np.abs(analytic - num) > tol * scale
    assert not bad.any(), f"{name}: analytic {analytic[bad][:4]} vs numeric {num[bad][:4]}"


@settings(max_examples=15)
@given(s=sizes(allow_empty=False, max_n=2), seed=seeds)
def test_relaxed_conv_finite_differences(s, seed):
    rng = np.random.default_rng(seed)
    x, L, w, _, _ = make(rng, s, F64)
    b = rng.standard_normal(s["O"])
    dout = rng.standard_normal((s["N"], s["O"], s["n_out"]))
    gx, gL, gw, gb = R.relaxed_conv_backward(dout, x, L, w)
    f = lambda: R.relaxed_conv(x, L, w, b)  # noqa: E731
    for name, p, g in (("x", x, gx), ("L", L, gL), ("w", w, gw), ("bias", b, gb)):
        assert_grad(g, numeric(f, p, dout), name)


@settings(max_examples=15)
@given(s=sizes(allow_empty=False, max_n=2), seed=seeds)
def test_receptive_conv_finite_differences(s, seed):
    rng = np.random.default_rng(seed)
    x, _, w, _, idx = make(rng, s, F64)
    b = rng.standard_normal(s["O"])
    dout = rng.standard_normal((s["N"], s["O"], s["n_out"]))
    gx, gw, gb = R.receptive_conv_backward(dout, x, idx, w)
    f = lambda: R.receptive_conv(x, idx, w, b)  # noqa: E731
    for name, p, g in (("x", x, gx), ("w", w, gw), ("bias", b, gb)):
        assert_grad(g, numeric(f, p, dout), name)


def test_softmax_receptive_field_gradient():
    rng = np.random.default_rng(0)
    Rt = rng.standard_normal((5, 4, 3))
    cm = np.array([1, 0, 4, 2])
    L = R.soft_receptive_field(Rt, cm)
    np.testing.assert_allclose(L.sum(axis=0), 1.0)
    assert (L[cm, np.arange(4), 0] == 1).all()
    dout = rng.standard_normal(L.shape)
    g = R.soft_receptive_field_backward(dout, L, centre=True)
    assert_grad(g, numeric(lambda: R.soft_receptive_field(Rt, cm), Rt, dout), "R")


# ============================================================================ bad input
X = np.zeros((2, 3, 5))
Lm = np.zeros((5, 4, 2))
Wm = np.zeros((6, 3, 2))
IDX = np.zeros((4, 2), np.int64)
GY = np.zeros((2, 6, 4))

BAD = {
    "relaxed x float32 L float64": (lambda: R.relaxed_conv(X.astype(F32), Lm, Wm.astype(F32)), TypeError, r"^L:"),
    "relaxed w dtype": (lambda: R.relaxed_conv(X, Lm, Wm.astype(F32)), TypeError, r"^w:"),
    "relaxed bias dtype": (lambda: R.relaxed_conv(X, Lm, Wm, np.zeros(6, F32)), TypeError, r"^bias"),
    "relaxed int x": (lambda: R.relaxed_conv(X.astype(int), Lm, Wm), TypeError, r"^x:"),
    "relaxed x rank 4": (lambda: R.relaxed_conv(X[None], Lm, Wm), ValueError, r"^x:"),
    "relaxed L n_in": (lambda: R.relaxed_conv(X, Lm[:4], Wm), ValueError, r"^L:"),
    "relaxed L rank": (lambda: R.relaxed_conv(X, Lm[0], Wm), ValueError, r"^L:"),
    "relaxed w channels": (lambda: R.relaxed_conv(X, Lm, Wm[:, :2]), ValueError, r"^w:"),
    "relaxed w k": (lambda: R.relaxed_conv(X, Lm, Wm[:, :, :1]), ValueError, r"^w:"),
    "relaxed bias shape": (lambda: R.relaxed_conv(X, Lm, Wm, np.zeros(5)), ValueError, r"^bias"),
    "relaxed grad_y shape": (lambda: R.relaxed_conv_backward(GY[:, :, :3], X, Lm, Wm), ValueError, r"^grad_y"),
    "relaxed grad_y dtype": (lambda: R.relaxed_conv_backward(GY.astype(F32), X, Lm, Wm), TypeError, r"^grad_y"),
    "relaxed patches shape": (lambda: R.relaxed_conv_backward(GY, X, Lm, Wm, patches=np.zeros((2, 3, 4, 1))),
                              ValueError, r"^patches:.*\(3, 2, 4, 2\)"),
    "relaxed patches dtype": (lambda: R.relaxed_conv_backward(GY, X, Lm, Wm, patches=np.zeros((3, 2, 4, 2), F32)),
                              ValueError, r"^patches:.*float32"),
    "relaxed patches list": (lambda: R.relaxed_conv_backward(GY, X, Lm, Wm, patches=[[0.0]]), ValueError,
                             r"^patches:.*list"),
    "receptive float index": (lambda: R.receptive_conv(X, IDX.astype(float), Wm), ValueError, r"^index.*float64"),
    "receptive bool index": (lambda: R.receptive_conv(X, IDX > 0, Wm), ValueError, r"^index.*bool"),
    "receptive index too large": (lambda: R.receptive_conv(X, IDX + 5, Wm), ValueError, r"^index.*\[-1, 5\)"),
    "receptive index -2": (lambda: R.receptive_conv(X, IDX - 2, Wm), ValueError, r"^index"),
    "receptive index uint64 huge": (lambda: R.receptive_conv(X, np.full((4, 2), 2**64 - 1, np.uint64), Wm),
                                    ValueError, r"^index"),
    "receptive index rank": (lambda: R.receptive_conv(X, IDX[0], Wm), ValueError, r"^index"),
    "receptive w k": (lambda: R.receptive_conv(X, IDX[:, :1], Wm), ValueError, r"^w:"),
    "receptive x dtype": (lambda: R.receptive_conv(X.astype(F32), IDX, Wm), TypeError, r"^w:"),
    "receptive grad_y shape": (lambda: R.receptive_conv_backward(GY[:1], X, IDX, Wm), ValueError, r"^grad_y"),
    "receptive backward bad index": (lambda: R.receptive_conv_backward(GY, X, IDX + 9, Wm), ValueError, r"^index"),
    # the bindings alone (no Python checks) must refuse too: never read out of bounds
    "core index out of range": (lambda: _core.receptive_conv_forward(X, IDX + 5, Wm, None), ValueError, r"^index"),
    "core index negative": (lambda: _core.receptive_conv_backward(GY, X, IDX - 7, Wm), ValueError, r"^index"),
    "core index float": (lambda: _core.receptive_conv_forward(X, IDX * 0.5, Wm, None), ValueError, r"^index"),
    "core index uint64": (lambda: _core.receptive_conv_forward(X, np.full((4, 2), 2**63, np.uint64), Wm, None),
                          ValueError, r"^index"),
    "core L n_in": (lambda: _core.relaxed_conv_forward(X, Lm[:3], Wm, None), ValueError, r"^L:"),
    "core w": (lambda: _core.relaxed_conv_forward(X, Lm, Wm[:, :1], None), ValueError, r"^w:"),
    "core bias": (lambda: _core.relaxed_conv_forward(X, Lm, Wm, np.zeros(2)), ValueError, r"^bias"),
    "core grad_y": (lambda: _core.relaxed_conv_backward(GY[:, :2], X, Lm, Wm), ValueError, r"^grad_y"),
    "core patches": (lambda: _core.relaxed_conv_backward(GY, X, Lm, Wm, np.zeros((2, 3, 4, 3))), ValueError,
                     r"^patches"),
    "core receptive grad_y": (lambda: _core.receptive_conv_backward(GY[:, :, :1], X, IDX, Wm), ValueError,
                              r"^grad_y"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input(case):
    call, exc, pattern = BAD[case]
    with pytest.raises(exc, match=pattern):
        call()


# ============================================================================ layer
def test_layer_params_centre_and_gradients():
    layer = R.RelaxedConv(2, 3, 6, 6, 4, seed=0, dtype=F64, r_std=0.5)
    assert list(layer.params) == ["R", "weight", "bias"]
    assert layer.params["R"].shape == (6, 6, 4) and layer.params["weight"].shape == (3, 2, 4)
    L = layer.soft_L()
    np.testing.assert_allclose(L.sum(axis=0), 1.0)
    np.testing.assert_array_equal(L[:, :, 0], np.eye(6))  # centre: output j reads input j
    x = np.random.default_rng(1).standard_normal((3, 2, 6))
    assert check_backward(layer, x) < 1e-6
    assert not layer.grads["R"][:, :, 0].any()  # the fixed slot gets no gradient
    layer.arch_grad = False
    layer.backward(np.ones((3, 3, 6)))
    assert not layer.grads["R"].any()


def test_layer_keeps_patches_for_its_backward():
    """A training forward hands P to the backward; the gradients equal the recomputing path's."""
    x = np.random.default_rng(2).standard_normal((4, 2, 6))
    gy = np.random.default_rng(3).standard_normal((4, 3, 6))
    grads, layers = [], []
    for budget in (R.RelaxedConv.patch_cache_bytes, 0):
        layer = R.RelaxedConv(2, 3, 6, 6, 4, seed=0, dtype=F64, r_std=0.5)
        layer.patch_cache_bytes = budget
        layer.forward(x, training=True)
        assert (layer._cache[-1] is not None) == (budget > 0)
        gx = layer.backward(gy)
        grads.append([gx] + [layer.grads[k].copy() for k in ("R", "weight", "bias")])
        layers.append(layer)
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    layers[0].forward(x, training=False)  # inference keeps no patches
    assert layers[0]._cache[-1] is None


def test_layer_discretize_matches_one_hot_relaxed():
    rng = np.random.default_rng(2)
    layer = R.RelaxedConv(1, 4, 9, 9, 3, seed=3, dtype=F64, r_std=1.0)
    x = rng.standard_normal((5, 1, 3, 3))  # (H, W) input is flattened
    idx = np.argmax(layer.params["R"], axis=0)
    idx[:, 0] = np.arange(9)
    layer.discretize()
    np.testing.assert_array_equal(layer.buffers["index"], idx)
    y = layer.forward(x)
    want = R.relaxed_conv(x.reshape(5, 1, 9), R.index_to_L(idx, 9), layer.params["weight"], layer.params["bias"])
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    assert check_backward(layer, x) < 1e-6
    assert layer.backward(np.ones_like(y)).shape == x.shape
    assert not layer.grads["R"].any()
    layer.relax()
    assert not layer.discrete


@pytest.mark.parametrize("discrete", [False, True])
def test_layer_config_state_roundtrip(discrete):
    layer = R.RelaxedConv(2, 3, 8, 4, 2, centre_map=[0, 2, 4, 6], seed=1, dtype=F32, r_std=1.0)
    if discrete:
        layer.discretize()
    cfg = json.loads(json.dumps(layer.config()))
    twin = layer_from_config(cfg)
    twin.load_state_dict(layer.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 2, 8)).astype(F32)
    np.testing.assert_array_equal(twin.forward(x), layer.forward(x))
    assert twin.discrete == discrete and twin.forward(x).dtype == F32


def test_relaxed_state_loads_as_its_discretisation():
    layer = R.RelaxedConv(1, 2, 6, 6, 3, seed=0, dtype=F64)
    layer.params["R"][2, :, 1] += 5.0  # after construction: the saved index must follow R
    twin = layer_from_config(dict(layer.config(), args=dict(layer.config()["args"], discrete=True)))
    twin.load_state_dict(layer.state_dict())
    want = np.argmax(layer.params["R"], axis=0)
    want[:, 0] = np.arange(6)
    np.testing.assert_array_equal(twin.buffers["index"], want)
    assert (twin.buffers["index"][:, 1] == 2).all()


def test_layer_init_grid_is_a_3x3_neighbourhood():
    layer = R.RelaxedConv(1, 2, 20, 20, 9, init_grid=(4, 5), seed=0)
    assert layer.soft_L()[:, :, 1:].max(axis=0).min() > 0.85  # most of the mass on the neighbour
    idx = layer.discretize().buffers["index"]
    grid = R.grid_index(4, 5, 3, padding="clamp")
    np.testing.assert_array_equal(idx, grid[:, [4, 0, 1, 2, 3, 5, 6, 7, 8]])  # centre first, then the ring
    assert R.field_distance(idx, (4, 5)) < 1.5


def test_layer_bad_arguments():
    with pytest.raises(ValueError, match="centre"):
        R.RelaxedConv(1, 1, 5, 4, 3)
    with pytest.raises(ValueError, match="init_grid"):
        R.RelaxedConv(1, 1, 6, 6, 3, init_grid=(2, 2))
    with pytest.raises(ValueError, match="centre_map"):
        R.RelaxedConv(1, 1, 5, 2, 3, centre_map=[0, 5])
    layer = R.RelaxedConv(1, 1, 6, 6, 3)
    with pytest.raises(ValueError, match="^x"):
        layer.forward(np.zeros((1, 1, 5), F32))
    with pytest.raises(TypeError, match="^x"):
        layer.forward(np.zeros((1, 1, 6), F64))


# ============================================================================ bilevel search
def tiny_model(seed=1):
    return Sequential(R.RelaxedConv(1, 2, 6, 6, 3, seed=seed, dtype=F64, r_std=0.5), ReLU(), Flatten(),
                      Linear(12, 3, seed=seed + 1, dtype=F64))


def tiny_data(seed=0, n=8):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 1, 6)), rng.integers(0, 3, n)), (rng.standard_normal((n, 1, 6)),
                                                                    rng.integers(0, 3, n))


@pytest.mark.parametrize("order", [1, 2])
def test_arch_gradient_matches_finite_differences(order):
    """order 1: d/dR L_val(W, R); order 2: d/dR L_val(W - xi dW L_train(W, R), R) (eq. 4), both
    checked along random directions against central differences of the exact objective."""
    model, loss, xi = tiny_model(), SoftmaxCrossEntropy(), 0.3
    (xt, yt), (xv, yv) = tiny_data()
    weights = R.weight_parameters(model)

    def objective():
        saved = [p.copy() for _, p, _ in weights]
        if order == 2:
            loss.forward(model.forward(xt, True), yt)
            model.backward(loss.backward())
            for _, p, g in weights:
                p -= xi * g
        v = loss.forward(model.forward(xv, True), yv)
        for (_, p, _), s in zip(weights, saved):
            p[...] = s
        return v

    before = [p.copy() for _, p, _ in weights]
    val = R.arch_gradient(model, loss, (xt, yt), (xv, yv), order=order, xi=xi, eps=1e-4)
    (_, Rp, g), = R.arch_parameters(model)
    g = g.copy()  # objective() below overwrites the model's grads
    for (_, p, _), b in zip(weights, before):
        np.testing.assert_array_equal(p, b)  # the weights are restored exactly
    assert abs(val - objective()) < 1e-12
    rng = np.random.default_rng(4)
    for _ in range(3):
        d = rng.standard_normal(Rp.shape)
        h = 1e-5
        Rp += h * d
        up = objective()
        Rp -= 2 * h * d
        dn = objective()
        Rp += h * d
        num, an = (up - dn) / (2 * h), float(np.sum(g * d))
        assert abs(an - num) <= 1e-6 * max(abs(num), 1e-3), (an, num)


@pytest.mark.parametrize("order", [1, 2])
def test_search_reduces_validation_loss_then_retrain(order):
    rng = np.random.default_rng(0)
    # a planted structure: class = sign pattern of x[j] + x[(j + 2) % 8] at two positions
    x = rng.standard_normal((192, 1, 8))
    s = x[:, 0] + np.roll(x[:, 0], -2, axis=1)
    y = (s[:, 0] > 0).astype(np.int64) + 2 * (s[:, 3] > 0)
    model = Sequential(R.RelaxedConv(1, 4, 8, 8, 2, seed=0, dtype=F64, r_std=0.01), ReLU(), Flatten(),
                       Linear(32, 4, seed=1, dtype=F64))
    w_opt = Adam(R.weight_parameters(model), lr=0.02)
    r_opt = Adam(R.arch_parameters(model), lr=0.05)
    R0 = model.params["layers.0.R"].copy()
    hist = R.search(model, (x[:96], y[:96]), (x[96:], y[96:]), epochs=6, batch_size=32, w_optimizer=w_opt,
                    r_optimizer=r_opt, order=order, transform=lambda a: a, verbose=False)
    assert hist["val_loss"][-1] < hist["val_loss"][0]
    assert not np.array_equal(model.params["layers.0.R"], R0)
    R.discretize(model)
    layer = R.relaxed_layers(model)[0]
    assert layer.discrete
    # retrain W with the receptive field fixed: R is not in the optimizer and gets no gradient
    opt = SGD(R.weight_parameters(model), lr=0.1)
    loss = SoftmaxCrossEntropy()
    first = None
    for _ in range(30):
        v = loss.forward(model.forward(x[:96], True), y[:96])
        first = v if first is None else first
        model.backward(loss.backward())
        opt.step()
    assert v < first
    assert not model.grads["layers.0.R"].any()


def test_search_rejects_r_in_weight_optimizer():
    model = tiny_model()
    with pytest.raises(ValueError, match="w_optimizer"):
        R.BilevelSearch(model, SGD(model.parameters(), lr=0.1), Adam(R.arch_parameters(model)))


# ============================================================================ pictures
def test_plot_and_png(tmp_path):
    idx = R.grid_index(28, 28, 3)[:, [4, 0, 1, 2, 3, 5, 6, 7, 8]]
    p = R.plot_receptive_fields(idx, (28, 28), str(tmp_path / "fields.png"), title="grid")
    with open(p, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    q = str(tmp_path / "raw.png")
    R.write_png(q, np.zeros((3, 4, 3), np.uint8))
    with open(q, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24]) == (4, 3)
    # distances in original pixels: a permutation and its inverse cancel
    perm = np.random.default_rng(0).permutation(784)
    inv = np.argsort(perm)
    permuted_idx = np.where(idx >= 0, inv[np.maximum(idx, 0)], -1)[perm]
    assert abs(R.field_distance(permuted_idx, (28, 28), perm) - R.field_distance(idx, (28, 28))) < 1e-12
    assert 1.0 < R.field_distance(idx, (28, 28)) < 1.25


# ============================================================================ experiment smoke test
def _have_mnist():
    try:
        from pyconvnet.data import mnist

        mnist(download=False)
        return True
    except Exception:
        return False


@pytest.mark.skipif(not _have_mnist(), reason="MNIST files not found (set PYCONVNET_DATA)")
def test_experiment_smoke(tmp_path):
    from pyconvnet.experiments import relaxed_mnist

    rc = relaxed_mnist.main(["--smoke", "--out", str(tmp_path)])
    assert rc == 0
    with open(tmp_path / "results.json") as f:
        res = json.load(f)
    assert set(res["accuracy"]) == {"mnist", "shuffled"}
    assert os.path.exists(tmp_path / "fields_mnist.png")


def test_two_thread_gradients_repeat_bit_for_bit():
    """Threads take static shares of the samples and add their private sums in thread
    order: repeated calls give the same bits (a dynamic schedule would not)."""
    old = pyconvnet.get_num_threads()
    pyconvnet.set_num_threads(2)
    try:
        rng = np.random.default_rng(5)
        x = rng.standard_normal((64, 2, 196)).astype(F32)
        w = rng.standard_normal((8, 2, 9)).astype(F32)
        gy = rng.standard_normal((64, 8, 196)).astype(F32)
        idx = R.grid_index(14, 14)
        L = R.index_to_L(idx, 196, F32)
        first = (R.receptive_conv_backward(gy, x, idx, w), R.relaxed_conv_backward(gy, x, L, w))
        for _ in range(10):
            again = (R.receptive_conv_backward(gy, x, idx, w), R.relaxed_conv_backward(gy, x, L, w))
            for a, b in zip(first, again):
                for g1, g2 in zip(a, b):
                    np.testing.assert_array_equal(g1, g2)
    finally:
        pyconvnet.set_num_threads(old)
