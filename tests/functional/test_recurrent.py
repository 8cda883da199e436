"""The LSTM, functional form (pyconvnet.functional.lstm / lstm_backward): the C++ kernels
against the naive loops over hypothesis-drawn shapes, float64 finite differences,
torch.nn.LSTM given the same weights (when torch is installed), bad input, threads."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pyconvnet
from pyconvnet import functional as F
from pyconvnet import reference as ref

from _helpers import F32, F64, assert_close, check_grad, dtypes, seeds


def make(rng, n, t, i, h, dtype=F64, bias=True, scale=0.5):
    x = rng.standard_normal((n, t, i)).astype(dtype)
    w_ih = (scale * rng.standard_normal((4 * h, i))).astype(dtype)
    w_hh = (scale * rng.standard_normal((4 * h, h))).astype(dtype)
    b_ih = (scale * rng.standard_normal(4 * h)).astype(dtype) if bias else None
    b_hh = (scale * rng.standard_normal(4 * h)).astype(dtype) if bias else None
    return x, w_ih, w_hh, b_ih, b_hh


shapes = st.tuples(st.integers(1, 3), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4))


# ============================================================================ kernels vs naive loops
@settings(max_examples=30)
@given(shape=shapes, dtype=dtypes, seed=seeds, bias=st.booleans(), seq=st.booleans())
def test_lstm_matches_reference(shape, dtype, seed, bias, seq):
    rng = np.random.default_rng(seed)
    args = make(rng, *shape, dtype=dtype, bias=bias)
    saved = [None if a is None else a.copy() for a in args]
    y = F.lstm(*args, return_sequences=seq)
    assert y.dtype == dtype
    assert_close(y, ref.lstm(*args, return_sequences=seq), dtype, "y")
    gy = rng.standard_normal(y.shape).astype(dtype)
    got = F.lstm_backward(gy, *args)
    want = ref.lstm_backward(gy, *args)
    for name, g, w in zip(("grad_x", "grad_weight_ih", "grad_weight_hh", "grad_bias_ih", "grad_bias_hh"), got, want):
        if g is not None:
            assert g.dtype == dtype, name
        assert_close(g, w, dtype, name)
    for a, s in zip(args, saved):
        if a is not None:
            np.testing.assert_array_equal(a, s)  # inputs untouched


def test_saved_state_gives_the_same_gradients():
    rng = np.random.default_rng(1)
    args = make(rng, 3, 5, 4, 3)
    y, saved = F.lstm(*args, return_saved=True)
    gy = rng.standard_normal(y.shape)
    a = F.lstm_backward(gy, *args, saved=saved)
    b = F.lstm_backward(gy, *args)
    for g, w in zip(a, b):
        np.testing.assert_array_equal(g, w)
    gx, gwi, _, _, _ = F.lstm_backward(gy, *args, need_grad_x=False)
    assert gx is None
    np.testing.assert_array_equal(gwi, b[1])


def test_last_step_gradient_is_the_sequence_gradient_with_zeros():
    rng = np.random.default_rng(2)
    args = make(rng, 2, 4, 3, 5)
    last = F.lstm(*args, return_sequences=False)
    np.testing.assert_array_equal(last, F.lstm(*args)[:, -1])
    g = rng.standard_normal(last.shape)
    full = np.zeros((2, 4, 5))
    full[:, -1] = g
    for a, b in zip(F.lstm_backward(g, *args), F.lstm_backward(full, *args)):
        np.testing.assert_array_equal(a, b)


def test_grad_out_buffers_are_written_in_place():
    rng = np.random.default_rng(3)
    args = make(rng, 2, 3, 4, 2)
    gy = rng.standard_normal((2, 3, 2))
    gwi, gwh = np.full((8, 4), np.nan), np.full((8, 2), np.nan)
    _, a, b, _, _ = F.lstm_backward(gy, *args, grad_weight_ih_out=gwi, grad_weight_hh_out=gwh)
    assert a is gwi and b is gwh
    want = ref.lstm_backward(gy, *args)
    assert_close(gwi, want[1], F64, "grad_weight_ih")
    assert_close(gwh, want[2], F64, "grad_weight_hh")


def test_zero_state_and_one_step_closed_form():
    """T = 1 from the zero state: h = o * tanh(i * g), nothing from W_hh."""
    rng = np.random.default_rng(4)
    x, w_ih, w_hh, b_ih, b_hh = make(rng, 3, 1, 4, 2)
    a = x[:, 0] @ w_ih.T + b_ih + b_hh
    def sig(v):
        return 1 / (1 + np.exp(-v))

    i, g, o = sig(a[:, :2]), np.tanh(a[:, 4:6]), sig(a[:, 6:])
    np.testing.assert_allclose(F.lstm(x, w_ih, w_hh, b_ih, b_hh)[:, 0], o * np.tanh(i * g), rtol=1e-13, atol=1e-15)
    _, _, gwh, _, _ = F.lstm_backward(np.ones((3, 1, 2)), x, w_ih, w_hh, b_ih, b_hh)
    np.testing.assert_array_equal(gwh, 0)


# ============================================================================ finite differences
@pytest.mark.parametrize("shape", [(2, 3, 3, 2), (1, 5, 2, 3), (3, 1, 2, 2)])
@pytest.mark.parametrize("seq", [True, False])
def test_lstm_gradients_float64_finite_differences(shape, seq, one_thread):
    rng = np.random.default_rng(sum(shape))
    x, w_ih, w_hh, b_ih, b_hh = make(rng, *shape)
    y = F.lstm(x, w_ih, w_hh, b_ih, b_hh, return_sequences=seq)
    dout = rng.standard_normal(y.shape)
    grads = F.lstm_backward(dout, x, w_ih, w_hh, b_ih, b_hh)
    check_grad(lambda: F.lstm(x, w_ih, w_hh, b_ih, b_hh, return_sequences=seq), [x, w_ih, w_hh, b_ih, b_hh],
               grads, dout, names=["x", "weight_ih", "weight_hh", "bias_ih", "bias_hh"])


def test_finite_differences_can_fail():
    """The check above would notice a wrong gradient (here: grad_weight_hh of another input)."""
    rng = np.random.default_rng(7)
    x, w_ih, w_hh, b_ih, b_hh = make(rng, 2, 3, 2, 2)
    dout = rng.standard_normal((2, 3, 2))
    wrong = F.lstm_backward(dout, x + 0.1, w_ih, w_hh, b_ih, b_hh)[2]
    with pytest.raises(AssertionError):
        check_grad(lambda: F.lstm(x, w_ih, w_hh, b_ih, b_hh), [w_hh], [wrong], dout)


# ============================================================================ torch.nn.LSTM
@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("bias", [True, False])
def test_lstm_matches_torch(dtype, bias):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    n, t, i, h = 4, 6, 5, 7
    x, w_ih, w_hh, b_ih, b_hh = make(rng, n, t, i, h, dtype, bias)
    m = torch.nn.LSTM(i, h, batch_first=True, bias=bias).to(torch.float64 if dtype == F64 else torch.float32)
    with torch.no_grad():
        m.weight_ih_l0.copy_(torch.from_numpy(w_ih))
        m.weight_hh_l0.copy_(torch.from_numpy(w_hh))
        if bias:
            m.bias_ih_l0.copy_(torch.from_numpy(b_ih))
            m.bias_hh_l0.copy_(torch.from_numpy(b_hh))
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out, (hn, _) = m(xt)
    y = F.lstm(x, w_ih, w_hh, b_ih, b_hh)
    tol = 1e-5 if dtype == F32 else 1e-12
    assert_close(y, out.detach().numpy(), dtype, "output", tol)
    assert_close(y[:, -1], hn[0].detach().numpy(), dtype, "h_n", tol)
    gy = rng.standard_normal(y.shape).astype(dtype)
    out.backward(torch.from_numpy(gy))
    gx, gwi, gwh, gbi, gbh = F.lstm_backward(gy, x, w_ih, w_hh, b_ih, b_hh)
    assert_close(gx, xt.grad.numpy(), dtype, "grad_x", tol)
    assert_close(gwi, m.weight_ih_l0.grad.numpy(), dtype, "grad_weight_ih", tol)
    assert_close(gwh, m.weight_hh_l0.grad.numpy(), dtype, "grad_weight_hh", tol)
    if bias:
        assert_close(gbi, m.bias_ih_l0.grad.numpy(), dtype, "grad_bias_ih", tol)
        assert_close(gbh, m.bias_hh_l0.grad.numpy(), dtype, "grad_bias_hh", tol)
    else:
        assert gbi is None and gbh is None


# ============================================================================ bad input
def _ok():
    return make(np.random.default_rng(0), 2, 3, 4, 5)


@pytest.mark.parametrize("edit, exc, match", [
    (lambda a: (a[0][0],) + a[1:], ValueError, r"x: expected a \(N, T, input_size\) array, got shape \(3, 4\)"),
    (lambda a: (a[0], a[1][:, :3]) + a[2:], ValueError, r"weight_ih: expected shape \(20, 4\).*got \(20, 3\)"),
    (lambda a: (a[0], a[1][:18]) + a[2:], ValueError, r"weight_ih: .*18 rows is not a positive multiple of 4"),
    (lambda a: a[:2] + (a[2][:, :4],) + a[3:], ValueError, r"weight_hh: expected shape \(20, 5\).*got \(20, 4\)"),
    (lambda a: a[:3] + (a[3][:7], a[4]), ValueError, r"bias_ih: expected shape \(20,\), got \(7,\)"),
    (lambda a: a[:4] + (a[4][:3],), ValueError, r"bias_hh: expected shape \(20,\), got \(3,\)"),
    (lambda a: (a[0].astype(F32),) + a[1:], TypeError, r"weight_ih: expected dtype float32"),
    (lambda a: (a[0].astype(np.int64),) + a[1:], TypeError, r"x: expected a float32 or float64 array"),
    (lambda a: (a[0][:, :0],) + a[1:], ValueError, r"x: expected a non-empty"),
])
def test_bad_input(edit, exc, match):
    args = edit(_ok())
    with pytest.raises(exc, match=match):
        F.lstm(*args)
    with pytest.raises(exc, match=match):
        F.lstm_backward(np.zeros((2, 3, 5)), *args)


def test_bad_grad_out_and_saved():
    args = _ok()
    with pytest.raises(ValueError, match=r"grad_out: expected shape \(2, 3, 5\) \(every step\) or \(2, 5\)"):
        F.lstm_backward(np.zeros((2, 3, 4)), *args)
    with pytest.raises(TypeError, match="saved: expected the"):
        F.lstm_backward(np.zeros((2, 5)), *args, saved=[1, 2, 3])
    with pytest.raises(ValueError, match=r"grad_weight_hh_out: expected shape \(20, 5\)"):
        F.lstm_backward(np.zeros((2, 5)), *args, grad_weight_hh_out=np.zeros((20, 4)))


def test_core_checks_shapes_itself():
    """The binding keeps memory safe for a direct _core call (the Python checks bypassed)."""
    x, w_ih, w_hh, b_ih, b_hh = _ok()
    with pytest.raises(ValueError, match=r"weight_hh: expected shape \(20, 5\)"):
        pyconvnet._core.lstm_forward(x, w_ih, w_hh[:, :2], b_ih, b_hh)
    with pytest.raises(ValueError, match=r"bias_ih: expected shape \(20,\)"):
        pyconvnet._core.lstm_forward(x, w_ih, w_hh, b_ih[:3], b_hh)
    h, g, c = pyconvnet._core.lstm_forward(x, w_ih, w_hh, b_ih, b_hh)
    with pytest.raises(ValueError, match=r"gates: expected shape \(2, 3, 20\)"):
        pyconvnet._core.lstm_backward(h, x, w_ih, w_hh, h, g[:, :2], c)


# ============================================================================ threads
def test_same_bits_on_any_thread_count():
    """Large enough for the parallel paths (the split GEMMs, the per-step passes over the batch)."""
    rng = np.random.default_rng(6)
    args = make(rng, 128, 5, 24, 64, F32)
    gy = rng.standard_normal((128, 5, 64)).astype(F32)
    old = pyconvnet.get_num_threads()
    outs = []
    try:
        for n in (1, 2, 3):
            pyconvnet.set_num_threads(n)
            outs.append((F.lstm(*args),) + F.lstm_backward(gy, *args))
    finally:
        pyconvnet.set_num_threads(old)
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            np.testing.assert_array_equal(a, b)
