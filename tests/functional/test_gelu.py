"""GELU and erf (csrc/kernels/gelu.cpp): the float erf approximation against math.erf at a million
points and in the tails, NaN and +-inf; gelu / gelu_backward / erf_backward against the naive
reference (hypothesis shapes), float64 finite differences and torch; the AVX-512 copy against the
portable loop; threads; bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pyconvnet
from pyconvnet import _core
from pyconvnet import functional as F
from pyconvnet import reference as R

from _helpers import F32, F64, check_grad, check_op, dtypes, seeds

APPROX = ("none", "tanh")
ERF_MAX_ABS = 2e-7  # the kernel's promise for float32 (measured ~1.2e-7)


ISAS = list(_core._isas()[1])  # the targets this CPU runs, best first; "baseline" is the portable loop


@pytest.fixture(params=ISAS)
def avx512(request):
    """Each ISA copy of the kernels this CPU runs (the kernels' target, restored after)."""
    prev = _core._set_isa(request.param)
    yield request.param
    _core._set_isa(prev)


def test_float_erf_against_math_erf_everywhere(avx512):
    x = np.concatenate([np.linspace(-6, 6, 1_000_001), np.geomspace(1e-30, 10, 2000), -np.geomspace(1e-30, 10, 2000),
                        [0.8749999, 0.875, 0.8750001, -0.875, 3.9, 4, 9.9, 10, 10.1, 1e30, -1e30, 5e-45]])
    x = x.astype(F32)
    want = np.array([math.erf(float(v)) for v in x])
    got = F.erf(x).astype(F64)
    err = np.abs(got - want)
    assert err.max() <= ERF_MAX_ABS, f"max |erf - math.erf| = {err.max():.3g} at x = {x[err.argmax()]}"
    tiny = (np.abs(x) < 1e-3) & (np.abs(x) > 1e-37)  # near 0 (not denormal) relative accuracy too
    np.testing.assert_allclose(got[tiny], want[tiny], rtol=1e-6)


def test_erf_special_values(avx512):
    for dt in (F32, F64):
        y = F.erf(np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], dt))
        assert np.isnan(y[0]) and y[1] == 1 and y[2] == -1 and y[3] == 0 and np.signbit(y[4])


@pytest.mark.parametrize("approximate", APPROX)
def test_gelu_special_values_as_torch(approximate, avx512):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -30.0, 30.0], F32)
    y = F.gelu(x, approximate)
    assert np.isnan(y[0]) and y[1] == np.inf and np.isnan(y[2])  # torch: gelu(-inf) = nan
    assert y[3] == 0 and y[4] == 0 and y[5] == 30
    g = F.gelu_backward(np.ones_like(x), x, approximate)
    assert np.isnan(g[0]) and g[3] == 0.5 and g[4] == 0 and g[5] == 1


@pytest.mark.parametrize("approximate", APPROX)
def test_gelu_float32_accuracy_and_negative_tail(approximate, avx512):
    """Against the float64 reference: within float32 rounding of |x|, and the tail keeps its relative
    accuracy (1 + erf computed without cancellation, where torch's float32 loses digits)."""
    x = np.linspace(-9, 9, 200_001).astype(F32)
    want = F.gelu(x.astype(F64), approximate)
    got = F.gelu(x, approximate).astype(F64)
    assert np.max(np.abs(got - want) / np.maximum(np.abs(x), 1)) < 3e-7
    tail = (x < -3) & (np.abs(want) > 1e-30)
    assert np.max(np.abs(got[tail] - want[tail]) / np.abs(want[tail])) < 3e-5
    gw = F.gelu_backward(np.ones_like(x, F64), x.astype(F64), approximate)
    gg = F.gelu_backward(np.ones_like(x), x, approximate).astype(F64)
    assert np.max(np.abs(gg - gw)) < 1e-6


def test_isa_copies_agree_with_the_portable_loop():
    x = np.random.default_rng(0).standard_normal(100_003).astype(F32) * 4
    outs = {}
    for isa in ISAS:
        prev = _core._set_isa(isa)
        try:
            outs[isa] = [F.gelu(x), F.gelu(x, "tanh"), F.erf(x), F.gelu_backward(x, x), F.gelu_backward(x, x, "tanh"),
                         F.erf_backward(x, x)]
        finally:
            _core._set_isa(prev)
    for isa in ISAS[:-1]:
        for a, b in zip(outs[isa], outs["baseline"]):
            np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7, err_msg=isa)


@given(shape=st.lists(st.integers(1, 5), min_size=1, max_size=4), dtype=dtypes, seed=seeds,
       approximate=st.sampled_from(APPROX))
def test_gelu_matches_reference(shape, dtype, seed, approximate):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    tol = 1e-6 if dtype == F32 else 1e-12
    check_op(lambda M: M.gelu(x, approximate), lambda M, g, o: M.gelu_backward(g, x, approximate), inputs=(x,),
             dtype=dtype, rng=rng, tol=tol)
    check_op(lambda M: M.erf(x), lambda M, g, o: M.erf_backward(g, x), inputs=(x,), dtype=dtype, rng=rng, tol=tol)


@pytest.mark.parametrize("approximate", APPROX)
def test_gelu_gradients_finite_differences(approximate):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 5)) * 3
    dout = rng.standard_normal(x.shape)
    check_grad(lambda: F.gelu(x, approximate), [x], [F.gelu_backward(dout, x, approximate)], dout, max_elems=100)
    check_grad(lambda: F.erf(x), [x], [F.erf_backward(dout, x)], dout, max_elems=100)


@pytest.mark.parametrize("approximate", APPROX)
def test_gelu_matches_torch(approximate):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    for dt in (F32, F64):
        x = (rng.standard_normal((4, 3, 7, 5)) * 3).astype(dt)
        g = rng.standard_normal(x.shape).astype(dt)
        xt = torch.from_numpy(x).requires_grad_()
        y = torch.nn.functional.gelu(xt, approximate=approximate)
        (gx,) = torch.autograd.grad(y, xt, torch.from_numpy(g))
        tol = 2e-6 if dt == F32 else 1e-12
        np.testing.assert_allclose(F.gelu(x, approximate), y.detach().numpy(), rtol=tol, atol=tol)
        np.testing.assert_allclose(F.gelu_backward(g, x, approximate), gx.numpy(), rtol=tol, atol=tol * 4)
    x = rng.standard_normal(1000)
    np.testing.assert_allclose(F.erf(x), torch.erf(torch.from_numpy(x)).numpy(), rtol=1e-14, atol=1e-15)


def test_gelu_threads_give_identical_results():
    """Chunks write disjoint elements: 1 and 2 threads agree bit for bit (a 300k-element array is several chunks)."""
    x = np.random.default_rng(3).standard_normal(300_000).astype(F32)
    n = pyconvnet.get_num_threads()
    try:
        pyconvnet.set_num_threads(1)
        one = (F.gelu(x), F.gelu_backward(x, x))
        pyconvnet.set_num_threads(2)
        two = (F.gelu(x), F.gelu_backward(x, x))
    finally:
        pyconvnet.set_num_threads(n)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_gelu_bad_input():
    with pytest.raises(ValueError, match="approximate: expected 'none' or 'tanh', got 'fast'"):
        F.gelu(np.zeros(3, F32), "fast")
    with pytest.raises(TypeError, match="x: expected a float32 or float64 array, got dtype int64"):
        F.gelu(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match=r"grad_out: expected the shape of x \(3,\), got \(4,\)"):
        F.gelu_backward(np.zeros(4, F32), np.zeros(3, F32))
    with pytest.raises(TypeError, match="grad_out: expected dtype float32"):
        F.gelu_backward(np.zeros(3, F64), np.zeros(3, F32))
    with pytest.raises(ValueError, match="grad_out: expected the shape of x"):
        F.erf_backward(np.zeros(4), np.zeros(3))
    # non-contiguous input is fine (copied once), the result is the same
    x = np.random.default_rng(0).standard_normal((6, 4)).astype(F32)
    np.testing.assert_array_equal(F.gelu(x[::2]), F.gelu(np.ascontiguousarray(x[::2])))


def test_reference_is_independent_of_the_kernel():
    """The oracle's GELU is written from Phi = erfc(-x/sqrt 2)/2: spot values from the definition."""
    v = R.gelu(np.array([1.0, -2.0]))
    np.testing.assert_allclose(v, [1 * 0.8413447460685429, -2 * 0.022750131948179195], rtol=1e-14)
