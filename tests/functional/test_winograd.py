"""Winograd F(m x m, 3 x 3) convolutions (csrc/kernels/winograd*): the forward pass and
both gradients of float32 3x3 stride-1 convolutions with >= 16 channels on both sides,
against the float64 im2col path, under every CPU target this machine runs.

The float32 error bound stated in csrc/kernels/winograd.h and checked here: the error of
every output, relative to the largest magnitude of the float64 result, is below 2e-5
for F(4x4) (the sqrt(2) points) and F(2x2) on these sizes; direct convolution's own
float32 error is about 1e-6 (test_winograd_error_is_measured_against_direct reports both)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pyconvnet
from pyconvnet import _core
from pyconvnet import functional as F

from _helpers import F32, F64, rand, seeds

BOUND = 2e-5  # relative to max |float64 result|


def _rel_err(got, want):
    return float(np.abs(got.astype(F64) - want).max() / max(np.abs(want).max(), 1e-30))


@st.composite
def wino_configs(draw):
    cin = draw(st.sampled_from([16, 17, 24, 32, 40]))
    cout = draw(st.sampled_from([16, 19, 32, 48]))
    h, w = draw(st.integers(3, 13)), draw(st.integers(3, 13))
    padding = draw(st.sampled_from([0, 1, 2, (1, 0), (0, 2), "same"]))
    pads = (padding, padding) if isinstance(padding, int) else ((1, 1) if padding == "same" else padding)
    if h + 2 * pads[0] < 3 + 2 or w + 2 * pads[1] < 3 + 2:  # at least 3 x 3 outputs
        h, w = max(h, 5), max(w, 5)
    # n >= 4: the backward pass goes chunk by chunk (conv_isa.h: wino_backward_plan)
    return dict(n=draw(st.integers(1, 6)), cin=cin, cout=cout, hw=(h, w), padding=padding,
                bias=draw(st.booleans()))


@pytest.mark.parametrize("threads", [1, 2])
@given(cfg=wino_configs(), seed=seeds)
def test_winograd_matches_float64(threads, cfg, seed, isa):
    old = pyconvnet.get_num_threads()
    pyconvnet.set_num_threads(threads)
    try:
        rng = np.random.default_rng(seed)
        x = rand(rng, (cfg["n"], cfg["cin"]) + cfg["hw"], F32)
        w = rand(rng, (cfg["cout"], cfg["cin"], 3, 3), F32)
        b = rand(rng, (cfg["cout"],), F32) if cfg["bias"] else None
        p = cfg["padding"]
        y64 = F.conv2d(x.astype(F64), w.astype(F64), None if b is None else b.astype(F64), padding=p)
        gy = rand(rng, y64.shape, F32)
        gx64, gw64, gb64 = F.conv2d_backward(gy.astype(F64), x.astype(F64), w.astype(F64), padding=p)
        calls = _core._calls("winograd")
        y = F.conv2d(x, w, b, padding=p)
        gx, gw, gb = F.conv2d_backward(gy, x, w, padding=p)
        assert _core._calls("winograd") - calls == 3, "forward, data and weight gradients take Winograd"
        # the weight gradient alone (a first layer): Winograd too, the bias gradient summed on its way
        _, gw_only, gb_only = F.conv2d_backward(gy, x, w, padding=p, need_grad_x=False)
        assert _core._calls("winograd") - calls == 4
        for name, got, want in (("y", y, y64), ("grad_x", gx, gx64), ("grad_w", gw, gw64),
                                ("grad_w (alone)", gw_only, gw64), ("grad_b", gb, gb64), ("grad_b (alone)", gb_only, gb64)):
            assert got.dtype == F32 and got.shape == want.shape
            assert _rel_err(got, want) < BOUND, f"{name}: relative error {_rel_err(got, want):.2e}"
    finally:
        pyconvnet.set_num_threads(old)


def test_winograd_bits_do_not_depend_on_the_thread_count(isa):
    """Forward and data gradient write disjoint outputs; the weight gradient sums fixed
    chunks of tiles in chunk order, the bias gradient samples in sample order: 1 and 2
    threads give the same bits."""
    rng = np.random.default_rng(3)
    x, w = rand(rng, (9, 32, 16, 16), F32), rand(rng, (48, 32, 3, 3), F32)
    gy = rand(rng, (9, 48, 16, 16), F32)
    out = []
    old = pyconvnet.get_num_threads()
    try:
        for t in (1, 2):
            pyconvnet.set_num_threads(t)
            out.append((F.conv2d(x, w, padding=1),) + F.conv2d_backward(gy, x, w, padding=1))
    finally:
        pyconvnet.set_num_threads(old)
    for a, b in zip(*out):
        np.testing.assert_array_equal(a, b)


def test_winograd_off_switch_and_small_layers_stay_direct():
    """The off switch is honoured, and layers with few channels (a first layer) never take
    Winograd: it pays only with wide enough GEMMs."""
    rng = np.random.default_rng(0)
    x, w = rand(rng, (2, 32, 8, 8), F32), rand(rng, (32, 32, 3, 3), F32)
    old = _core._set_switch("winograd", False)
    try:
        calls = _core._calls("winograd")
        y_off = F.conv2d(x, w, padding=1)
        assert _core._calls("winograd") == calls
    finally:
        _core._set_switch("winograd", old)
    np.testing.assert_allclose(F.conv2d(x, w, padding=1), y_off, rtol=1e-4, atol=1e-4 * np.abs(y_off).max())
    calls = _core._calls("winograd")
    F.conv2d(rand(rng, (2, 3, 8, 8), F32), rand(rng, (32, 3, 3, 3), F32), padding=1)
    assert _core._calls("winograd") == calls


def test_winograd_error_is_measured_against_direct():
    """The documented bound is honest on a training-sized layer: Winograd's error is within
    BOUND, and no more than ~20x the direct (im2col) float32 path's error."""
    rng = np.random.default_rng(1)
    x, w = rand(rng, (8, 64, 16, 16), F32), rand(rng, (64, 64, 3, 3), F32)
    y64 = F.conv2d(x.astype(F64), w.astype(F64), padding=1)
    y_w = F.conv2d(x, w, padding=1)
    old = _core._set_switch("winograd", False)
    try:
        y_d = F.conv2d(x, w, padding=1)
    finally:
        _core._set_switch("winograd", old)
    ew, ed = _rel_err(y_w, y64), _rel_err(y_d, y64)
    assert ew < BOUND and ew < 20 * max(ed, 1e-7), (ew, ed)
