"""Dropout's C++ kernel: the counter-based mask (a function of seed and size only, the
same on every thread count and on both the AVX-512 and baseline copies), the scaling,
the gradient, the statistics of the mask, and bad input."""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pyconvnet
from pyconvnet import _core
from pyconvnet import functional as F

pytestmark = pytest.mark.usefixtures("one_thread")

F32, F64 = np.float32, np.float64


@contextlib.contextmanager
def target(name):
    """The kernels' instruction-set target for the block."""
    old = _core._set_isa(name)
    try:
        yield
    finally:
        _core._set_isa(old)


@given(n=st.integers(0, 300), p=st.sampled_from([0.0, 0.1, 0.5, 0.75, 0.999]), seed=st.integers(0, 2**64 - 1),
       dtype=st.sampled_from([F32, F64]))
def test_forward_is_mask_times_scaled_x_and_every_copy_agrees(n, p, seed, dtype):
    x = np.random.default_rng(seed % 2**32).standard_normal((n, 3)).astype(dtype)
    with target(_core._isas()[1][0]):  # the best this CPU runs
        y, mask = F.dropout(x, p, seed, return_mask=True)
    for other in _core._isas()[1][1:]:  # every other copy draws the same bits
        with target(other):
            y2, mask2 = F.dropout(x, p, seed, return_mask=True)
        np.testing.assert_array_equal(mask, mask2)
        np.testing.assert_array_equal(y, y2)
    assert y.dtype == dtype and mask.dtype == np.bool_ and mask.shape == x.shape
    np.testing.assert_array_equal(y, np.where(mask, x * dtype(1 / (1 - p)), dtype(0)))
    # the mask is the documented hash: kept where bits(seed, i) >= p * 2^32
    bits = np.array([_core._dropout_bits(seed, i) for i in range(x.size)], np.uint64)
    np.testing.assert_array_equal(mask.ravel(), bits >= np.uint64(min(int(p * 2**32), 2**32 - 1)))
    g = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    np.testing.assert_array_equal(F.dropout_backward(g, mask, p), np.where(mask, g * dtype(1 / (1 - p)), dtype(0)))


def test_mask_independent_of_thread_count_and_seeded():
    x = np.ones(5 * 65536 + 17, F32)  # more than 4 chunks: the parallel loop runs
    old = pyconvnet.get_num_threads()
    try:
        pyconvnet.set_num_threads(1)
        _, m1 = F.dropout(x, 0.5, 12345, return_mask=True)
        pyconvnet.set_num_threads(2)
        _, m2 = F.dropout(x, 0.5, 12345, return_mask=True)
    finally:
        pyconvnet.set_num_threads(old)
    np.testing.assert_array_equal(m1, m2)
    _, m3 = F.dropout(x, 0.5, 12346, return_mask=True)
    assert 0.45 < np.mean(m1 != m3) < 0.55  # another seed: an unrelated mask


@pytest.mark.parametrize("p", [0.05, 0.25, 0.5, 0.9])
def test_mask_statistics(p):
    """Keep rate within 5 sigma of 1 - p; neighbouring elements uncorrelated; masks of
    consecutive seeds uncorrelated (a weak hash would fail these on counters 0, 1, 2...)."""
    n = 1 << 20
    x = np.ones(n, F32)
    _, m = F.dropout(x, p, 7, return_mask=True)
    q = 1 - p
    sigma = np.sqrt(n * p * q)
    assert abs(m.sum() - n * q) < 5 * sigma
    a, b = m[:-1].astype(F64), m[1:].astype(F64)
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(n)
    _, m2 = F.dropout(x, p, 8, return_mask=True)
    assert abs(np.corrcoef(m.astype(F64), m2.astype(F64))[0, 1]) < 5 / np.sqrt(n)


def test_bits_uniform_over_counters():
    """Chi-square of the top 4 bits of 2^16 consecutive counters, two keys (15 dof; 99.99% point ~ 44)."""
    for key in (0, 2**63 + 12345):
        top = np.array([_core._dropout_bits(key, i) >> 28 for i in range(1 << 16)])
        counts = np.bincount(top, minlength=16)
        chi2 = float(np.sum((counts - 4096.0) ** 2 / 4096.0))
        assert chi2 < 44, chi2


BAD = {
    "p 1": (lambda: F.dropout(np.ones(3), 1.0, 0), ValueError, r"^p: expected a probability in \[0, 1\)"),
    "p negative": (lambda: F.dropout(np.ones(3), -0.1, 0), ValueError, r"^p:"),
    "p nan": (lambda: F.dropout(np.ones(3), float("nan"), 0), ValueError, r"^p:"),
    "seed negative": (lambda: F.dropout(np.ones(3), 0.5, -1), ValueError, r"^seed"),
    "seed float": (lambda: F.dropout(np.ones(3), 0.5, 1.5), TypeError, r"^seed"),
    "int x": (lambda: F.dropout(np.ones(3, int), 0.5, 0), TypeError, r"^x:"),
    "mask dtype": (lambda: F.dropout_backward(np.ones(3), np.ones(3), 0.5), ValueError, r"^mask:"),
    "mask shape": (lambda: F.dropout_backward(np.ones(3), np.ones(4, bool), 0.5), ValueError, r"^mask:"),
    "core p": (lambda: _core.dropout_forward(np.ones(3), 1.5, 0), ValueError, r"^p:"),
    "core mask dtype": (lambda: _core.dropout_backward(np.ones(3), np.ones(3), 2.0), ValueError, r"^mask:"),
    "core mask shape": (lambda: _core.dropout_backward(np.ones(3), np.ones(2, bool), 2.0), ValueError,
                        r"^grad_out"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input(case):
    call, exc, pattern = BAD[case]
    with pytest.raises(exc, match=pattern):
        call()


def test_returns_y_alone_as_torch_and_the_mask_on_request():
    """dropout(x, p, seed) is y (torch's return); return_mask=True adds the mask of the same
    draw, which dropout_backward takes; the same seed gives the mask back."""
    x = np.random.default_rng(3).standard_normal((4, 5)).astype(F32)
    y = F.dropout(x, 0.4, 99)
    assert isinstance(y, np.ndarray) and y.shape == x.shape
    y2, mask = F.dropout(x, 0.4, 99, return_mask=True)
    np.testing.assert_array_equal(y, y2)
    np.testing.assert_array_equal(y != 0, mask)
    g = np.ones_like(x)
    np.testing.assert_array_equal(F.dropout_backward(g, mask, 0.4), np.where(mask, F32(1 / 0.6), F32(0)))
    with pytest.raises(TypeError):
        F.dropout(x, 0.4, 99, True)  # return_mask is keyword-only: a stray positional is an error


def test_seed_none_draws_from_the_global_seed():
    x = np.ones(1000, F32)
    pyconvnet.manual_seed(5)
    a = F.dropout(x, 0.5)
    b = F.dropout(x, 0.5)
    pyconvnet.manual_seed(5)
    np.testing.assert_array_equal(F.dropout(x, 0.5), a)
    assert np.any(a != b)  # consecutive calls draw fresh seeds
