"""pad, adaptive / global pooling, hardtanh, log_softmax and conv2d's (top, bottom, left, right)
padding: against the naive reference over hypothesis-drawn shapes, float64 finite differences,
torch, and bad input."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pyconvnet import functional as F

from _helpers import F32, F64, check_grad, check_op, distinct_values, dtypes, rand, seeds

pytestmark = pytest.mark.usefixtures("one_thread")


@st.composite
def pad_cases(draw):
    mode = draw(st.sampled_from(["constant", "reflect", "replicate"]))
    h, w = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    lo = -1 if mode == "constant" else 0
    pads = []
    for n in (w, w, h, h):
        hi = n - 1 if mode == "reflect" else 3
        pads.append(draw(st.integers(lo if n > 1 else 0, max(hi, 0))))
    if mode == "constant":
        assume(w + pads[0] + pads[1] >= 0 and h + pads[2] + pads[3] >= 0)
        # a crop of more than the dimension on one side is not meaningful
        assume(-min(pads[0], 0) - min(pads[1], 0) <= w and -min(pads[2], 0) - min(pads[3], 0) <= h)
    lead = tuple(draw(st.lists(st.integers(1, 2), min_size=0, max_size=2)))
    return mode, lead + (h, w), tuple(pads), draw(st.floats(-2, 2))


@given(case=pad_cases(), dtype=dtypes, seed=seeds)
def test_pad_matches_reference(case, dtype, seed):
    mode, shape, pads, value = case
    rng = np.random.default_rng(seed)
    x = rand(rng, shape, dtype)
    check_op(lambda M: M.pad(x, pads, mode, value) if mode == "constant" else M.pad(x, pads, mode),
             lambda M, g, o: M.pad_backward(g, x.shape, pads, mode), inputs=(x,), dtype=dtype, rng=rng)


@pytest.mark.parametrize("mode, pads", [("constant", (2, -1, 1, 0)), ("reflect", (2, 1, 3, 2)),
                                        ("replicate", (3, 0, 1, 4))])
def test_pad_gradients_finite_differences(mode, pads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 2, 4, 5))
    dout = rng.standard_normal(F.pad(x, pads, mode).shape)
    check_grad(lambda: F.pad(x, pads, mode), [x], [F.pad_backward(dout, x.shape, pads, mode)], dout, max_elems=100)


@pytest.mark.parametrize("mode, pads", [("constant", (2, -1, 1, 0)), ("reflect", (2, 1, 3, 2)),
                                        ("replicate", (3, 0, 1, 4))])
def test_pad_matches_torch(mode, pads):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5)).astype(F32)
    kw = dict(value=0.5) if mode == "constant" else {}
    want = torch.nn.functional.pad(torch.from_numpy(x), pads, mode=mode, **kw).numpy()
    np.testing.assert_array_equal(F.pad(x, pads, mode, **kw), want)


def test_pad_bad_input():
    x = np.zeros((1, 1, 3, 3), F32)
    with pytest.raises(ValueError, match="mode: expected one of constant, reflect, replicate, got 'wrap'"):
        F.pad(x, 1, "wrap")
    with pytest.raises(ValueError, match="reflect padding must be smaller than the padded dimension"):
        F.pad(x, (3, 0, 0, 0), "reflect")
    with pytest.raises(ValueError, match="negative pads .* only with mode='constant'"):
        F.pad(x, (-1, 0, 0, 0), "replicate")
    with pytest.raises(ValueError, match=r"pads: expected \(left, right, top, bottom\)"):
        F.pad(x, (1, 2, 3))
    with pytest.raises(ValueError, match="crop more than the input"):
        F.pad(x, (-2, -2, 0, 0))
    with pytest.raises(ValueError, match=r"grad_out: expected shape \(1, 1, 5, 5\)"):
        F.pad_backward(np.zeros((1, 1, 4, 4), F32), x.shape, 1)


@st.composite
def adaptive_cases(draw):
    h, w = draw(st.integers(1, 7)), draw(st.integers(1, 7))
    out = (draw(st.integers(1, h + 2)), draw(st.integers(1, w + 2)))  # also larger than the input (torch allows)
    return (draw(st.integers(1, 2)), draw(st.integers(1, 2)), h, w), out


@given(case=adaptive_cases(), dtype=dtypes, seed=seeds)
def test_adaptive_pools_match_reference(case, dtype, seed):
    shape, out = case
    rng = np.random.default_rng(seed)
    x = rand(rng, shape, dtype)
    check_op(lambda M: M.adaptive_avg_pool2d(x, out), lambda M, g, o: M.adaptive_avg_pool2d_backward(g, x.shape),
             inputs=(x,), dtype=dtype, rng=rng)
    xd = distinct_values(rng, shape, dtype)
    check_op(lambda M: M.adaptive_max_pool2d(xd, out, return_indices=True),
             lambda M, g, o: M.adaptive_max_pool2d_backward(g, o[1], xd.shape), inputs=(xd,), dtype=dtype, rng=rng)


def test_adaptive_max_first_maximum_wins():
    x = np.array([[[[1.0, 3.0, 3.0], [3.0, 0.0, 3.0]]]], F32)
    y, idx = F.adaptive_max_pool2d(x, 1, return_indices=True)
    assert y[0, 0, 0, 0] == 3 and idx[0, 0, 0, 0] == 1
    g = F.adaptive_max_pool2d_backward(np.ones((1, 1, 1, 1), F32), idx, x.shape)
    assert g.sum() == 1 and g[0, 0, 0, 1] == 1


@pytest.mark.parametrize("out", [1, (2, 3), (5, 4), (None, 2)])
def test_adaptive_pools_match_torch_and_finite_differences(out):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    x = distinct_values(rng, (2, 3, 7, 6), F64)
    xt = torch.from_numpy(x)
    tout = out if not isinstance(out, tuple) else tuple(out)
    np.testing.assert_allclose(F.adaptive_avg_pool2d(x, out), torch.nn.functional.adaptive_avg_pool2d(xt, tout).numpy(),
                               rtol=1e-12)
    y, idx = F.adaptive_max_pool2d(x, out, return_indices=True)
    ty, tidx = torch.nn.functional.adaptive_max_pool2d(xt, tout, return_indices=True)
    np.testing.assert_array_equal(y, ty.numpy())
    np.testing.assert_array_equal(idx, tidx.numpy())
    dout = rng.standard_normal(y.shape)
    check_grad(lambda: F.adaptive_avg_pool2d(x, out), [x], [F.adaptive_avg_pool2d_backward(dout, x.shape)], dout)
    check_grad(lambda: F.adaptive_max_pool2d(x, out), [x], [F.adaptive_max_pool2d_backward(dout, idx, x.shape)], dout)


def test_adaptive_bad_input():
    with pytest.raises(ValueError, match="output_size: expected positive sizes"):
        F.adaptive_avg_pool2d(np.zeros((1, 1, 3, 3), F32), 0)
    with pytest.raises(ValueError, match="output_size: expected an int or a pair"):
        F.adaptive_max_pool2d(np.zeros((1, 1, 3, 3), F32), (1, 2, 3))
    with pytest.raises(ValueError, match=r"x: expected a \(N, C, H, W\) or \(C, H, W\) array"):
        F.adaptive_avg_pool2d(np.zeros((3, 3), F32), 1)


@given(shape=st.lists(st.integers(1, 4), min_size=2, max_size=4), dtype=dtypes, seed=seeds,
       bounds=st.sampled_from([(-1.0, 1.0), (0.0, 6.0), (-0.5, np.inf), (-np.inf, 0.25)]))
def test_hardtanh_and_log_softmax_match_reference(shape, dtype, seed, bounds):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    check_op(lambda M: M.hardtanh(x, *bounds), lambda M, g, o: M.hardtanh_backward(g, x, *bounds), inputs=(x,),
             dtype=dtype, rng=rng)
    axis = int(rng.integers(-len(shape), len(shape)))
    check_op(lambda M: M.log_softmax(x, axis), lambda M, g, o: M.log_softmax_backward(g, o[0], axis), inputs=(x,),
             dtype=dtype, rng=rng)


def test_hardtanh_log_softmax_gradients_and_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x = rng.choice([-1, 1], (3, 5)) * rng.uniform(0.1, 0.9, (3, 5)) * 3  # away from the clip points 0 and 6... and +-1
    x[np.abs(np.abs(x) - 1) < 0.05] += 0.2
    dout = rng.standard_normal(x.shape)
    check_grad(lambda: F.hardtanh(x), [x], [F.hardtanh_backward(dout, x)], dout)
    y = F.log_softmax(x, 1)
    check_grad(lambda: F.log_softmax(x, 1), [x], [F.log_softmax_backward(dout, y, 1)], dout)
    xt = torch.from_numpy(x).requires_grad_()
    yt = torch.log_softmax(xt, 1)
    (gt,) = torch.autograd.grad(yt, xt, torch.from_numpy(dout))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(F.log_softmax_backward(dout, y, 1), gt.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(F.hardtanh(x, 0, 6), torch.nn.functional.relu6(torch.from_numpy(x)).numpy())
    big = np.array([[1000.0, 0.0, -1000.0]])
    assert np.isfinite(F.log_softmax(big)).all()


def test_hardtanh_log_softmax_bad_input():
    with pytest.raises(ValueError, match="min_val/max_val: expected min_val <= max_val"):
        F.hardtanh(np.zeros(2), 1, 0)
    with pytest.raises(ValueError, match="axis: 2 is out of range"):
        F.log_softmax(np.zeros((2, 2)), 2)
    with pytest.raises(ValueError, match="grad_out: expected the shape of y"):
        F.log_softmax_backward(np.zeros(3), np.zeros((1, 3)))


@given(dtype=dtypes, seed=seeds, pads=st.tuples(*[st.integers(0, 3)] * 4), stride=st.integers(1, 3),
       groups=st.sampled_from([1, 2]), dil=st.integers(1, 2))
def test_conv2d_asymmetric_padding_matches_reference(dtype, seed, pads, stride, groups, dil):
    rng = np.random.default_rng(seed)
    x = rand(rng, (2, 2 * groups, 5, 6), dtype)
    w = rand(rng, (2 * groups, 2, 3, 2), dtype)
    b = rand(rng, (2 * groups,), dtype)
    geo = dict(stride=stride, padding=pads, dilation=dil, groups=groups)
    check_op(lambda M: M.conv2d(x, w, b, **geo), lambda M, g, o: M.conv2d_backward(g, x, w, **geo),
             inputs=(x, w, b), dtype=dtype, rng=rng)


def test_conv2d_asymmetric_padding_equals_explicit_pad():
    rng = np.random.default_rng(5)
    x, w = rand(rng, (2, 3, 7, 6), F32), rand(rng, (4, 3, 3, 3), F32)
    got = F.conv2d(x, w, padding=(2, 0, 1, 3))  # (top, bottom, left, right)
    want = F.conv2d(F.pad(x, (1, 3, 2, 0)), w)  # pad's (left, right, top, bottom)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="padding: expected non-negative values"):
        F.conv2d(x, w, padding=(1, -1, 0, 0))
