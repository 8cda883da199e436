"""Shared pieces of the relaxed receptive-field tests (functional, layer, search)."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from pyconvnet.layers import Flatten, Linear, ReLU, RelaxedConv, Sequential

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


def tiny_model(seed=1):
    return Sequential(RelaxedConv(1, 2, 6, 6, 3, seed=seed, dtype=F64, r_std=0.5), ReLU(), Flatten(),
                      Linear(12, 3, seed=seed + 1, dtype=F64))


def tiny_data(seed=0, n=8):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 1, 6)), rng.integers(0, 3, n)), (rng.standard_normal((n, 1, 6)),
                                                                    rng.integers(0, 3, n))
