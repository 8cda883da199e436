"""The relaxed receptive-field convolution (the relaxed receptive field paper), functional
form: kernels vs naive loops, float64 finite differences, bad input, thread determinism."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings

import pyconvnet
from pyconvnet import _core
from pyconvnet import functional as F
from pyconvnet import reference as ref

from relaxed_helpers import F32, F64, close, dtypes, einsum_relaxed, make, seeds, sizes


# ============================================================================ kernels vs naive loops
@given(s=sizes(), dtype=dtypes, seed=seeds)
def test_relaxed_conv_matches_reference(s, dtype, seed):
    rng = np.random.default_rng(seed)
    x, L, w, b, _ = make(rng, s, dtype)
    saved = [a.copy() for a in (x, L, w)]
    y = F.relaxed_conv(x, L, w, b)
    close(y, ref.relaxed_conv(x, L, w, b), dtype, "y")
    gy = rng.standard_normal(y.shape).astype(dtype)
    got = F.relaxed_conv_backward(gy, x, L, w)
    want = ref.relaxed_conv_backward(gy, x, L, w)
    for name, g, r in zip(("grad_x", "grad_L", "grad_w", "grad_bias"), got, want):
        close(g, r, dtype, name)
    for a, c in zip((x, L, w), saved):
        np.testing.assert_array_equal(a, c)  # inputs untouched
    gx, gL, gw, gb = F.relaxed_conv_backward(gy, x, L, w, need_grad_x=False, need_grad_L=False)
    assert gx is None and gL is None
    close(gw, want[2], dtype, "grad_w alone")
    # the forward's patches handed to the backward: same gradients, P = x L
    y2, P = F.relaxed_conv(x, L, w, b, return_patches=True)
    close(y2, ref.relaxed_conv(x, L, w, b), dtype, "y with patches")
    close(P, np.einsum("nci,ijs->cnjs", x.astype(F64), L.astype(F64)), dtype, "patches")
    got = F.relaxed_conv_backward(gy, x, L, w, patches=P)
    for name, g, r in zip(("grad_x", "grad_L", "grad_w", "grad_bias"), got, want):
        close(g, r, dtype, name + " (patches given)")


@given(s=sizes(), dtype=dtypes, seed=seeds)
def test_receptive_conv_matches_reference(s, dtype, seed):
    rng = np.random.default_rng(seed)
    x, _, w, b, idx = make(rng, s, dtype)
    y = F.receptive_conv(x, idx, w, b)
    close(y, ref.receptive_conv(x, idx, w, b), dtype, "y")
    gy = rng.standard_normal(y.shape).astype(dtype)
    got = F.receptive_conv_backward(gy, x, idx, w)
    want = ref.receptive_conv_backward(gy, x, idx, w)
    for name, g, r in zip(("grad_x", "grad_w", "grad_bias"), got, want):
        close(g, r, dtype, name)
    # the index table as a one-hot dense L gives the same op through the relaxed kernels
    L = F.index_to_L(idx, s["n_in"], dtype)
    close(F.relaxed_conv(x, L, w, b), y.astype(F64).astype(dtype), dtype, "one-hot relaxed y")
    rg = F.relaxed_conv_backward(gy, x, L, w)
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
            y = F.relaxed_conv(x, L, w, b)
            close(y, einsum_relaxed(x, L, w, b), dtype, "y")
            y2, P = F.relaxed_conv(x, L, w, b, return_patches=True)  # blocks write into P's channel rows
            close(y2, einsum_relaxed(x, L, w, b), dtype, "y (patches returned)")
            gy = rng.standard_normal(y.shape).astype(dtype)
            x64, L64, w64, g64 = (a.astype(F64) for a in (x, L, w, gy))
            dP = np.einsum("ocs,noj->ncjs", w64, g64)
            for patches in (None, P):
                gx, gL, gw, gb = F.relaxed_conv_backward(gy, x, L, w, patches=patches)
                close(gx, np.einsum("ncjs,ijs->nci", dP, L64), dtype, "grad_x")
                close(gL, np.einsum("nci,ncjs->ijs", x64, dP), dtype, "grad_L")
                close(gw, np.einsum("noj,nci,ijs->ocs", g64, x64, L64), dtype, "grad_w")
                close(gb, g64.sum(axis=(0, 2)), dtype, "grad_bias")
            idx = rng.integers(-1, n_in, size=(n_out, k))
            Lh = F.index_to_L(idx, n_in, F64)
            y2 = F.receptive_conv(x, idx, w, b)
            close(y2, einsum_relaxed(x, Lh, w, b), dtype, "receptive y")
            gx2, gw2, gb2 = F.receptive_conv_backward(gy, x, idx, w)
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
    idx = F.grid_index(h, w_, 3, dilation=dilation)
    got = F.receptive_conv(x.reshape(3, c, h * w_), idx, w.reshape(o, c, 9), b)
    close(got, want.reshape(3, o, h * w_).astype(F64).astype(dtype), dtype, "y")
    gy = rng.standard_normal(want.shape).astype(dtype)
    gx, gw, gb = F.conv2d_backward(gy, x, w, padding=dilation, dilation=dilation)
    rx, rw, rb = F.receptive_conv_backward(gy.reshape(3, o, h * w_), x.reshape(3, c, h * w_), idx,
                                           w.reshape(o, c, 9))
    close(rx, gx.reshape(rx.shape), dtype, "grad_x")
    close(rw, gw.reshape(rw.shape), dtype, "grad_w")
    close(rb, gb, dtype, "grad_bias")


def test_grid_index_layout():
    idx = F.grid_index(3, 4)
    assert idx.shape == (12, 9) and idx.dtype == np.int64
    np.testing.assert_array_equal(idx[5], [0, 1, 2, 4, 5, 6, 8, 9, 10])  # pixel (1, 1)
    np.testing.assert_array_equal(idx[0], [-1, -1, -1, -1, 0, 1, -1, 4, 5])
    np.testing.assert_array_equal(F.grid_index(3, 4, padding="clamp")[0], [0, 0, 1, 0, 0, 1, 4, 4, 5])


def test_non_contiguous_and_list_inputs():
    rng = np.random.default_rng(7)
    xb = rng.standard_normal((3, 2, 10))
    x = xb[:, :, ::2]  # strided view
    L = np.asfortranarray(rng.standard_normal((5, 4, 3)))
    w = rng.standard_normal((2, 3, 2)).transpose(0, 2, 1)  # (2, 2, 3) view
    idx = rng.integers(-1, 5, (3, 4)).T  # (4, 3), non-contiguous
    np.testing.assert_allclose(F.relaxed_conv(x, L, w), F.relaxed_conv(x.copy(), L.copy(), w.copy()), rtol=1e-13)
    np.testing.assert_array_equal(F.receptive_conv(x, idx, w), F.receptive_conv(x.copy(), idx.copy(), w.copy()))
    np.testing.assert_array_equal(F.receptive_conv(x, idx.tolist(), w), F.receptive_conv(x, idx, w))


def test_empty_sizes():
    x = np.zeros((0, 2, 5))
    L = np.ones((5, 3, 2))
    w = np.ones((4, 2, 2))
    b = np.arange(4.0)
    assert F.relaxed_conv(x, L, w, b).shape == (0, 4, 3)
    gx, gL, gw, gb = F.relaxed_conv_backward(np.zeros((0, 4, 3)), x, L, w)
    assert gx.shape == (0, 2, 5) and not gL.any() and not gw.any() and not gb.any()
    y = F.receptive_conv(np.ones((2, 2, 5)), np.full((3, 2), -1), w, b)  # all padding: only the bias
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
    gx, gL, gw, gb = F.relaxed_conv_backward(dout, x, L, w)
    f = lambda: F.relaxed_conv(x, L, w, b)  # noqa: E731
    for name, p, g in (("x", x, gx), ("L", L, gL), ("w", w, gw), ("bias", b, gb)):
        assert_grad(g, numeric(f, p, dout), name)


@settings(max_examples=15)
@given(s=sizes(allow_empty=False, max_n=2), seed=seeds)
def test_receptive_conv_finite_differences(s, seed):
    rng = np.random.default_rng(seed)
    x, _, w, _, idx = make(rng, s, F64)
    b = rng.standard_normal(s["O"])
    dout = rng.standard_normal((s["N"], s["O"], s["n_out"]))
    gx, gw, gb = F.receptive_conv_backward(dout, x, idx, w)
    f = lambda: F.receptive_conv(x, idx, w, b)  # noqa: E731
    for name, p, g in (("x", x, gx), ("w", w, gw), ("bias", b, gb)):
        assert_grad(g, numeric(f, p, dout), name)


def test_softmax_receptive_field_gradient():
    rng = np.random.default_rng(0)
    Rt = rng.standard_normal((5, 4, 3))
    cm = np.array([1, 0, 4, 2])
    L = F.soft_receptive_field(Rt, cm)
    np.testing.assert_allclose(L.sum(axis=0), 1.0)
    assert (L[cm, np.arange(4), 0] == 1).all()
    dout = rng.standard_normal(L.shape)
    g = F.soft_receptive_field_backward(dout, L, centre=True)
    assert_grad(g, numeric(lambda: F.soft_receptive_field(Rt, cm), Rt, dout), "R")


# ============================================================================ bad input
X = np.zeros((2, 3, 5))
Lm = np.zeros((5, 4, 2))
Wm = np.zeros((6, 3, 2))
IDX = np.zeros((4, 2), np.int64)
GY = np.zeros((2, 6, 4))

BAD = {
    "relaxed x float32 L float64": (lambda: F.relaxed_conv(X.astype(F32), Lm, Wm.astype(F32)), TypeError, r"^L:"),
    "relaxed w dtype": (lambda: F.relaxed_conv(X, Lm, Wm.astype(F32)), TypeError, r"^w:"),
    "relaxed bias dtype": (lambda: F.relaxed_conv(X, Lm, Wm, np.zeros(6, F32)), TypeError, r"^bias"),
    "relaxed int x": (lambda: F.relaxed_conv(X.astype(int), Lm, Wm), TypeError, r"^x:"),
    "relaxed x rank 4": (lambda: F.relaxed_conv(X[None], Lm, Wm), ValueError, r"^x:"),
    "relaxed L n_in": (lambda: F.relaxed_conv(X, Lm[:4], Wm), ValueError, r"^L:"),
    "relaxed L rank": (lambda: F.relaxed_conv(X, Lm[0], Wm), ValueError, r"^L:"),
    "relaxed w channels": (lambda: F.relaxed_conv(X, Lm, Wm[:, :2]), ValueError, r"^w:"),
    "relaxed w k": (lambda: F.relaxed_conv(X, Lm, Wm[:, :, :1]), ValueError, r"^w:"),
    "relaxed bias shape": (lambda: F.relaxed_conv(X, Lm, Wm, np.zeros(5)), ValueError, r"^bias"),
    "relaxed grad_out shape": (lambda: F.relaxed_conv_backward(GY[:, :, :3], X, Lm, Wm), ValueError, r"^grad_out"),
    "relaxed grad_out dtype": (lambda: F.relaxed_conv_backward(GY.astype(F32), X, Lm, Wm), TypeError, r"^grad_out"),
    "relaxed patches shape": (lambda: F.relaxed_conv_backward(GY, X, Lm, Wm, patches=np.zeros((2, 3, 4, 1))),
                              ValueError, r"^patches:.*\(3, 2, 4, 2\)"),
    "relaxed patches dtype": (lambda: F.relaxed_conv_backward(GY, X, Lm, Wm, patches=np.zeros((3, 2, 4, 2), F32)),
                              ValueError, r"^patches:.*float32"),
    "relaxed patches list": (lambda: F.relaxed_conv_backward(GY, X, Lm, Wm, patches=[[0.0]]), ValueError,
                             r"^patches:.*list"),
    "receptive float index": (lambda: F.receptive_conv(X, IDX.astype(float), Wm), ValueError, r"^index.*float64"),
    "receptive bool index": (lambda: F.receptive_conv(X, IDX > 0, Wm), ValueError, r"^index.*bool"),
    "receptive index too large": (lambda: F.receptive_conv(X, IDX + 5, Wm), ValueError, r"^index.*\[-1, 5\)"),
    "receptive index -2": (lambda: F.receptive_conv(X, IDX - 2, Wm), ValueError, r"^index"),
    "receptive index uint64 huge": (lambda: F.receptive_conv(X, np.full((4, 2), 2**64 - 1, np.uint64), Wm),
                                    ValueError, r"^index"),
    "receptive index rank": (lambda: F.receptive_conv(X, IDX[0], Wm), ValueError, r"^index"),
    "receptive w k": (lambda: F.receptive_conv(X, IDX[:, :1], Wm), ValueError, r"^w:"),
    "receptive x dtype": (lambda: F.receptive_conv(X.astype(F32), IDX, Wm), TypeError, r"^w:"),
    "receptive grad_out shape": (lambda: F.receptive_conv_backward(GY[:1], X, IDX, Wm), ValueError, r"^grad_out"),
    "receptive backward bad index": (lambda: F.receptive_conv_backward(GY, X, IDX + 9, Wm), ValueError, r"^index"),
    # the bindings alone (no Python checks) must refuse too: never read out of bounds
    "core index out of range": (lambda: _core.receptive_conv_forward(X, IDX + 5, Wm, None), ValueError, r"^index"),
    "core index negative": (lambda: _core.receptive_conv_backward(GY, X, IDX - 7, Wm), ValueError, r"^index"),
    "core index float": (lambda: _core.receptive_conv_forward(X, IDX * 0.5, Wm, None), ValueError, r"^index"),
    "core index uint64": (lambda: _core.receptive_conv_forward(X, np.full((4, 2), 2**63, np.uint64), Wm, None),
                          ValueError, r"^index"),
    "core L n_in": (lambda: _core.relaxed_conv_forward(X, Lm[:3], Wm, None), ValueError, r"^L:"),
    "core w": (lambda: _core.relaxed_conv_forward(X, Lm, Wm[:, :1], None), ValueError, r"^w:"),
    "core bias": (lambda: _core.relaxed_conv_forward(X, Lm, Wm, np.zeros(2)), ValueError, r"^bias"),
    "core grad_out": (lambda: _core.relaxed_conv_backward(GY[:, :2], X, Lm, Wm), ValueError, r"^grad_out"),
    "core patches": (lambda: _core.relaxed_conv_backward(GY, X, Lm, Wm, np.zeros((2, 3, 4, 3))), ValueError,
                     r"^patches"),
    "core receptive grad_out": (lambda: _core.receptive_conv_backward(GY[:, :, :1], X, IDX, Wm), ValueError,
                              r"^grad_out"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input(case):
    call, exc, pattern = BAD[case]
    with pytest.raises(exc, match=pattern):
        call()


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
        idx = F.grid_index(14, 14)
        L = F.index_to_L(idx, 196, F32)
        first = (F.receptive_conv_backward(gy, x, idx, w), F.relaxed_conv_backward(gy, x, L, w))
        for _ in range(10):
            again = (F.receptive_conv_backward(gy, x, idx, w), F.relaxed_conv_backward(gy, x, L, w))
            for a, b in zip(first, again):
                for g1, g2 in zip(a, b):
                    np.testing.assert_array_equal(g1, g2)
    finally:
        pyconvnet.set_num_threads(old)
