"""The direct stride-1 float32 convolution (csrc/conv_direct.cpp) against the
im2col + GEMM path in float64, which test_functional checks against the naive
loops.

The geometries here are the ones the direct path takes: stride 1, output rows at
least 8 wide, output-channel counts that exercise both tile shapes (14 and 8
channels) and their remainders, dilation, asymmetric ('same' with even kernels)
and over-large padding, groups, 1 and 2 threads, batches smaller than the thread
count. A call counter in _core proves the path really ran.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import pyconvnet
from pyconvnet import _core
from pyconvnet import functional as F

from _helpers import F32, F64, assert_close, rand, seeds, span
from conftest import LANES

SUPPORTED = _core._switches()["direct_conv"][1]


@pytest.fixture(autouse=True)
def direct_on():
    """The direct path on, and Winograd off: these tests are about the direct kernels
    (test_winograd.py covers the 3x3 layers Winograd takes). The AVX-512 target's
    hand-over of 16-channel forwards to the AVX2 copy on half-width cores is off, so
    the AVX-512 copy is what the avx512 runs test on every CPU."""
    was = _core._set_switch("direct_conv", True)
    wino = _core._set_switch("winograd", False)
    halves = _core._set_switch("avx512_halves", False)
    yield
    _core._set_switch("direct_conv", was)
    _core._set_switch("winograd", wino)
    _core._set_switch("avx512_halves", halves)


@st.composite
def direct_configs(draw):
    groups = draw(st.integers(1, 3))
    cin = groups * draw(st.sampled_from([1, 2, 3, 4, 8, 13, 20]))  # 20 x 5x5 > 384 taps: blocked k loop
    cout = groups * draw(st.sampled_from([1, 3, 8, 9, 14, 15, 22, 30]))
    k = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    mode = draw(st.sampled_from(["int", "pair", "same", "big"]))
    if mode == "same":
        padding, pad4 = "same", tuple(v for kk, d in zip(k, dil) for v in (d * (kk - 1) // 2, d * (kk - 1) - d * (kk - 1) // 2))
    elif mode == "big":  # padding past the kernel's reach: backward clips grad_output
        p = draw(st.integers(3, 6))
        padding, pad4 = p, (p,) * 4
    else:
        ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
        padding, pad4 = (ph, pw), (ph, ph, pw, pw)
    ow = draw(st.integers(1, 40))  # forward and data gradient want rows of > 8 outputs; weight gradient any
    w = ow - pad4[2] - pad4[3] + span(k[1], dil[1]) - 1
    h_lo = max(1, span(k[0], dil[0]) - pad4[0] - pad4[1])  # at least one output row
    h = draw(st.integers(h_lo, max(h_lo, 7)))
    if w < 1:
        w = 1
    n = draw(st.integers(1, 5))
    return dict(n=n, groups=groups, cin=cin, cout=cout, k=k, padding=padding, dilation=dil, hw=(h, w))


def _expected_direct_calls(cfg, yshape, lanes):
    """The rules of csrc/kernels/conv_direct_body.h: stride 1 (always here), not a plain 1x1
    conv nor a whole-image kernel, output rows filling more than half their vectors (of
    `lanes` floats: the target's width), and at least 4
    output channels per group, or (forward) at least a vector of output channels filling
    clearly more lanes than the rows do (weight gradient: with at least 48 taps per output
    channel, C/groups * kh * kw, any rows; with fewer, the pixel-vectorised kernel,
    rows as the forward's)."""
    if cfg["k"] == (1, 1) and cfg["padding"] in ((0, 0), "same"):
        return 0
    if (cfg["groups"] == 1 and yshape[2:] == (1, 1) and cfg["k"] == cfg["hw"] and cfg["dilation"] == (1, 1)
            and cfg["padding"] in ((0, 0), "same")):
        return 0  # the kernel covers the whole image: a dense layer, one GEMM (conv.cpp's is_dense)
    rows_ok = lambda n: n >= 1 and 2 * n > lanes * (-(-n // lanes))  # noqa: E731
    g = cfg["groups"]
    fill = lambda n: n / (lanes * (-(-n // lanes)))  # noqa: E731 - the lanes a row or channel count fills
    # forward: the row tiles, or the channel-vector tiles where those fill clearly more lanes
    channels = cfg["cout"] // g >= lanes and fill(cfg["cout"] // g) >= fill(yshape[3]) + 0.2
    fwd = (cfg["cout"] // g >= 4 and rows_ok(yshape[3])) or channels
    bwd_data = cfg["cin"] // g >= 4 and rows_ok(cfg["hw"][1])
    taps = (cfg["cin"] // g) * cfg["k"][0] * cfg["k"][1]
    wgrad = (taps >= 48 and yshape[3] >= 1) or (taps < 48 and rows_ok(yshape[3]))
    return int(fwd) + int(bwd_data) + int(wgrad)


def _run(cfg, x, w, b, gy=None):
    geo = dict(stride=1, padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"])
    y = F.conv2d(x, w, b, **geo)
    if gy is None:
        return y, None
    return y, F.conv2d_backward(gy, x, w, **geo)


@pytest.mark.parametrize("threads", [1, 2])
@given(cfg=direct_configs(), seed=seeds, with_bias=st.booleans())
def test_direct_conv_matches_float64_im2col(threads, cfg, seed, with_bias, isa):
    n_prev = pyconvnet.get_num_threads()
    pyconvnet.set_num_threads(threads)
    try:
        rng = np.random.default_rng(seed)
        x = rand(rng, (cfg["n"], cfg["cin"]) + cfg["hw"], F32)
        w = rand(rng, (cfg["cout"], cfg["cin"] // cfg["groups"]) + cfg["k"], F32)
        b = rand(rng, (cfg["cout"],), F32) if with_bias else None
        y64, _ = _run(cfg, x.astype(F64), w.astype(F64), None if b is None else b.astype(F64))
        gy = rand(rng, y64.shape, F32)
        calls = _core._calls("direct_conv")
        y, (gx, gw, gb) = _run(cfg, x, w, b, gy)
        _, (gx64, gw64, gb64) = _run(cfg, x.astype(F64), w.astype(F64), None if b is None else b.astype(F64),
                                     gy.astype(F64))
        assert y.dtype == F32 and gx.dtype == F32
        assert_close(y, y64, F32, "y")
        assert_close(gx, gx64, F32, "grad_x")
        assert_close(gw, gw64, F32, "grad_w")
        if SUPPORTED:  # forward, data and weight gradients took the direct path where its rules say it should
            assert _core._calls("direct_conv") - calls == _expected_direct_calls(cfg, y.shape, LANES[isa])
    finally:
        pyconvnet.set_num_threads(n_prev)


@given(cfg=direct_configs(), seed=seeds)
def test_direct_equals_im2col_float32(cfg, seed, one_thread):
    """Same float32 inputs through both paths: they agree to float32 rounding."""
    rng = np.random.default_rng(seed)
    x = rand(rng, (cfg["n"], cfg["cin"]) + cfg["hw"], F32)
    w = rand(rng, (cfg["cout"], cfg["cin"] // cfg["groups"]) + cfg["k"], F32)
    y_direct, _ = _run(cfg, x, w, None)
    _core._set_switch("direct_conv", False)
    before = _core._calls("direct_conv")
    y_gemm, _ = _run(cfg, x, w, None)
    assert _core._calls("direct_conv") == before  # switched off: not taken
    assert_close(y_direct, y_gemm, F32, "y")


@given(seed=seeds, n=st.integers(1, 3), cin=st.integers(1, 20), cout=st.integers(1, 20),
       hw=st.integers(8, 20), k=st.integers(1, 4), pad=st.integers(0, 2))
def test_direct_conv_transpose_stride1(seed, n, cin, cout, hw, k, pad, one_thread):
    """A stride-1 transposed conv runs the direct backward-data kernel as its forward."""
    rng = np.random.default_rng(seed)
    if hw + k - 1 - 2 * pad < 1:
        pad = 0
    x = rand(rng, (n, cin, hw, hw), F32)
    w = rand(rng, (cin, cout, k, k), F32)
    y = F.conv_transpose2d(x, w, None, stride=1, padding=pad)
    y64 = F.conv_transpose2d(x.astype(F64), w.astype(F64), None, stride=1, padding=pad)
    assert_close(y, y64, F32, "y")


def test_direct_conv_seed_shapes_match_torch_style_reference(one_thread):
    """The seed networks' stride-1 layers, batch 2, against the naive loop oracle."""
    R = pytest.importorskip("pyconvnet.reference")
    rng = np.random.default_rng(0)
    for (cin, cout, hw, k, p) in [(1, 6, 32, 5, 0), (6, 16, 14, 5, 0), (1, 32, 28, 3, 1), (32, 64, 12, 3, 1),
                                  (64, 128, 16, 3, 1)]:
        x = rand(rng, (2, cin, hw, hw), F32)
        w = rand(rng, (cout, cin, k, k), F32) * np.float32(1 / np.sqrt(cin * k * k))
        b = rand(rng, (cout,), F32)
        calls = _core._calls("direct_conv")
        y = F.conv2d(x, w, b, padding=p)
        if SUPPORTED:
            assert _core._calls("direct_conv") == calls + 1
        want = R.conv2d(x.astype(F64), w.astype(F64), b.astype(F64), padding=p)
        assert_close(y, want, F32, f"conv {cin}->{cout} {hw}x{hw} k{k}")


@pytest.mark.parametrize("ow", [10, 20, 28])
def test_half_width_avx512_hands_16_channel_forwards_to_avx2(ow, one_thread):
    """On a CPU running AVX-512 on 256-bit halves (Zen 4), the avx512 target's forward
    of 16 channels a group whose rows fill at most 80% of 16 lanes runs the AVX2 copy
    (counted by the avx512_halves switch); elsewhere, or switched off, nothing changes.
    Either way the result is the AVX-512 copy's to float32 rounding."""
    info = pyconvnet.cpu_info()
    if "avx512" not in info["available"]:
        pytest.skip("no AVX-512 on this CPU")
    assert _core._switches()["avx512_halves"][1] == info["avx512_half_width"]
    rng = np.random.default_rng(ow)
    x = rand(rng, (3, 6, 5, ow + 4), F32)
    w = rand(rng, (16, 6, 5, 5), F32)
    prev = _core._set_isa("avx512")
    try:
        y_512 = F.conv2d(x, w)  # the fixture has the hand-over off
        _core._set_switch("avx512_halves", True)
        before = _core._calls("avx512_halves")
        y = F.conv2d(x, w)
        taken = _core._calls("avx512_halves") - before
    finally:
        _core._set_isa(prev)
    expect = info["avx512_half_width"] and 5 * ow <= 4 * 16 * (-(-ow // 16))
    assert taken == int(expect), (ow, info["microarch"])
    assert_close(y, y_512, F32, "y")
