"""pyconvnet.functional against the naive loop oracle pyconvnet.reference.

Every forward output and every backward output is compared (check_op) on
hypothesis-drawn geometries, in float64 (tight) and float32 (scaled 1e-4):
batch, channels, groups, non-square kernels, stride (also > kernel), int/pair/
'valid'/'same' padding, dilation, output_padding, ceil_mode, count_include_pad,
max-pool indices, batch-norm running statistics and return_stats. The rest of
the file covers the API contract: output dtype, non-contiguous / list inputs,
inputs never modified, unbatched (C, H, W) inputs and empty batches.
"""
from __future__ import annotations

import contextlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyconvnet import _core
from pyconvnet import functional as F

from _helpers import (F32, F64, as_tuple, assert_close, check_op, conv_configs, conv_transpose_configs, distinct_values,
                      dtypes, pool_configs, rand, seeds)

R = pytest.importorskip("pyconvnet.reference", reason="the naive oracle pyconvnet.reference is not importable")


# Thousands of tiny kernels: single-threaded (see conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------- convolution
@given(cfg=conv_configs(), dtype=dtypes, seed=seeds, with_bias=st.booleans(), need_grad_x=st.booleans())
def test_conv2d_matches_reference(cfg, dtype, seed, with_bias, need_grad_x):
    rng = np.random.default_rng(seed)
    x = rand(rng, (cfg["n"], cfg["cin"]) + cfg["hw"], dtype)
    w = rand(rng, (cfg["cout"], cfg["cin"] // cfg["groups"]) + cfg["k"], dtype)
    b = rand(rng, (cfg["cout"],), dtype) if with_bias else None
    geo = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"])
    out, grads = check_op(lambda M: M.conv2d(x, w, b, **geo),
                          lambda M, g, o: M.conv2d_backward(g, x, w, **geo, need_grad_x=need_grad_x),
                          inputs=(x, w, b), dtype=dtype, rng=rng)
    if cfg["padding"] == "same":
        assert out[0].shape[2:] == cfg["hw"]
    assert (grads[0] is None) == (not need_grad_x)


def test_conv2d_backward_need_grad_bias_false_skips_only_the_bias():
    rng = np.random.default_rng(3)
    x, w = rand(rng, (2, 3, 9, 9), F32), rand(rng, (4, 3, 3, 3), F32)
    gy = rand(rng, (2, 4, 7, 7), F32)
    full = F.conv2d_backward(gy, x, w)
    gx, gw, gb = F.conv2d_backward(gy, x, w, need_grad_bias=False)
    assert gb is None and full[2] is not None
    np.testing.assert_array_equal(gx, full[0])
    np.testing.assert_array_equal(gw, full[1])


@given(cfg=conv_transpose_configs(), dtype=dtypes, seed=seeds, with_bias=st.booleans())
def test_conv_transpose2d_matches_reference(cfg, dtype, seed, with_bias):
    rng = np.random.default_rng(seed)
    x = rand(rng, (cfg["n"], cfg["cin"]) + cfg["hw"], dtype)
    w = rand(rng, (cfg["cin"], cfg["cout"] // cfg["groups"]) + cfg["k"], dtype)
    b = rand(rng, (cfg["cout"],), dtype) if with_bias else None
    geo = dict(stride=cfg["stride"], padding=cfg["padding"], output_padding=cfg["output_padding"],
               groups=cfg["groups"], dilation=cfg["dilation"])
    out, _ = check_op(lambda M: M.conv_transpose2d(x, w, b, **geo),
                      lambda M, g, o: M.conv_transpose2d_backward(g, x, w, **geo),
                      inputs=(x, w, b), dtype=dtype, rng=rng)
    want = tuple((h - 1) * s - 2 * p + d * (k - 1) + op + 1 for h, s, p, d, k, op in
                 zip(cfg["hw"], cfg["stride"], cfg["padding"], cfg["dilation"], cfg["k"], cfg["output_padding"]))
    assert out[0].shape == (cfg["n"], cfg["cout"]) + want


@given(cfg=conv_configs(allow_same=False), dtype=dtypes, seed=seeds)
def test_unfold_fold_match_reference(cfg, dtype, seed):
    rng = np.random.default_rng(seed)
    c = cfg["cin"]
    x = rand(rng, (cfg["n"], c) + cfg["hw"], dtype)
    pad = cfg["padding"] if cfg["padding"] != "valid" else 0
    geo = dict(kernel_size=cfg["k"], dilation=cfg["dilation"], padding=pad, stride=cfg["stride"])
    (cols,), _ = check_op(lambda M: M.unfold(x, **geo), inputs=(x,), dtype=dtype)
    oh, ow = F.conv2d_output_size(cfg["hw"], cfg["k"], cfg["stride"], pad, cfg["dilation"])
    assert cols.shape == (cfg["n"], c * cfg["k"][0] * cfg["k"][1], oh * ow)
    y = rand(rng, cols.shape, dtype)
    (img,), _ = check_op(lambda M: M.fold(y, cfg["hw"], **geo), inputs=(y,), dtype=dtype)
    assert img.shape == x.shape


# ----------------------------------------------------------------------------- pooling
@given(cfg=pool_configs(), dtype=dtypes, seed=seeds)
def test_max_pool2d_matches_reference(cfg, dtype, seed):
    rng = np.random.default_rng(seed)
    x = distinct_values(rng, (cfg["n"], cfg["c"]) + cfg["hw"], dtype)  # no ties: the argmax is unique
    geo = dict(kernel_size=cfg["k"], stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"],
               ceil_mode=cfg["ceil_mode"])
    (y, idx), _ = check_op(lambda M: M.max_pool2d(x, **geo, return_indices=True),
                           lambda M, g, o: M.max_pool2d_backward(g, o[1], x.shape),
                           inputs=(x,), dtype=dtype, rng=rng, names=("y", "indices"), out_dtypes=(dtype, np.int64))
    assert idx.dtype == np.int64
    assert y.shape == (cfg["n"], cfg["c"]) + F.pool2d_output_size(cfg["hw"], **geo)
    # y is the input at the returned flat index of each plane
    planes = x.reshape(cfg["n"], cfg["c"], -1)
    ok = idx >= 0
    np.testing.assert_array_equal(np.take_along_axis(planes, np.where(ok, idx, 0).reshape(*idx.shape[:2], -1),
                                                     axis=2).reshape(idx.shape)[ok], y[ok])
    # without return_indices: the output alone
    assert_close(F.max_pool2d(x, **geo), R.max_pool2d(x, **geo), dtype, "max_pool2d without indices")


NAN, INF = float("nan"), float("inf")
# (row of values, kernel width, padding, expected y, expected index): torch's CPU rule, a value
# replaces the running maximum when it is greater or NaN, the scan starting at the window's
# first real element (so an all -inf window still has that element as argmax; -1 is kept for
# windows lying wholly in the padding).
NONFINITE_CASES = [
    ([NAN, 1.0, -INF, INF], 1, 0, [NAN, 1.0, -INF, INF], [0, 1, 2, 3]),
    ([1.0, NAN, 2.0, NAN], 4, 0, [NAN], [3]),
    ([-INF, -INF], 2, 0, [-INF], [0]),
    ([-INF, 5.0, -INF], 3, 0, [5.0], [1]),
    ([-INF, -INF, -INF], 3, 1, [-INF, -INF, -INF], [0, 0, 1]),
    ([2.0, 2.0, 1.0], 2, 0, [2.0, 2.0], [0, 1]),
]


@pytest.mark.parametrize("impl", ["functional", "reference"])
@pytest.mark.parametrize("case", range(len(NONFINITE_CASES)))
@pytest.mark.parametrize("dtype", [F32, F64])
def test_max_pool2d_nan_inf_and_ties_follow_torch(impl, case, dtype):
    """Hand-computed: NaN wins, the first of equal maxima wins, and a window of real -inf values
    has its first element as argmax (its gradient must not be dropped)."""
    M = F if impl == "functional" else R
    row, k, p, want_y, want_i = NONFINITE_CASES[case]
    x = np.array(row, dtype).reshape(1, 1, 1, -1)
    y, idx = M.max_pool2d(x, (1, k), (1, 1), (0, p), return_indices=True)
    np.testing.assert_array_equal(y.ravel(), np.array(want_y, dtype))
    np.testing.assert_array_equal(idx.ravel(), want_i, err_msg=f"{impl}: argmax of {row}, kernel {k}, padding {p}")
    g = M.max_pool2d_backward(np.ones(y.shape, dtype), idx, x.shape)
    assert g.sum() == len(want_y), f"{impl}: gradient lost for some window"


@given(cfg=pool_configs(dilation=False), dtype=dtypes, seed=seeds, cip=st.booleans())
def test_avg_pool2d_matches_reference(cfg, dtype, seed, cip):
    rng = np.random.default_rng(seed)
    x = rand(rng, (cfg["n"], cfg["c"]) + cfg["hw"], dtype)
    geo = dict(kernel_size=cfg["k"], stride=cfg["stride"], padding=cfg["padding"], ceil_mode=cfg["ceil_mode"],
               count_include_pad=cip)
    check_op(lambda M: M.avg_pool2d(x, **geo),
             lambda M, g, o: M.avg_pool2d_backward(g, x.shape, **geo),
             inputs=(x,), dtype=dtype, rng=rng, tol=1e-5 if dtype == F32 else None)


# ----------------------------------------------------------------------------- batch norm
bn_shapes = st.sampled_from([(4, 3), (2, 3, 5), (2, 3, 2, 3), (3, 1, 2, 2), (2, 2), (1, 2, 3, 1)])


@given(shape=bn_shapes, dtype=dtypes, seed=seeds, affine=st.sampled_from(["none", "weight", "bias", "both"]),
       track=st.sampled_from(["none", "both", "mean"]), momentum=st.sampled_from([0.1, 0.5, 1.0, 0.0]),
       eps=st.sampled_from([1e-5, 1e-3, 0.5]), offset=st.sampled_from([0.0, 3.0]))
def test_batch_norm_training_matches_reference(shape, dtype, seed, affine, track, momentum, eps, offset):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = (rand(rng, shape, dtype) * 2 + offset).astype(dtype)
    w = rand(rng, (c,), dtype) if affine in ("weight", "both") else None
    b = rand(rng, (c,), dtype) if affine in ("bias", "both") else None
    rm0 = rand(rng, (c,), dtype)
    rv0 = (rng.random(c) + 0.5).astype(dtype)
    stats = {}

    def fwd(M):
        rm = rm0.copy() if track != "none" else None
        rv = rv0.copy() if track == "both" else None
        y, mean, invstd = M.batch_norm(x, rm, rv, w, b, training=True, momentum=momentum, eps=eps, return_stats=True)
        stats[M] = (rm, rv)
        return y, mean, invstd

    (y, mean, invstd), _ = check_op(fwd, lambda M, g, o: M.batch_norm_backward(g, x, w, o[1], o[2]),
                                    inputs=(x, w, b, rm0, rv0), dtype=dtype, rng=rng, names=("y", "mean", "invstd"))
    (rm, rv), (rm_ref, rv_ref) = stats[F], stats[R]
    assert_close(rm, rm_ref, dtype, "running_mean update")
    assert_close(rv, rv_ref, dtype, "running_var update")
    if track != "none":
        assert rm.dtype == dtype
    assert mean.shape == invstd.shape == (c,)
    # plain call (no return_stats) returns the output alone
    assert_close(F.batch_norm(x, None, None, w, b, training=True, eps=eps), y, dtype, "without return_stats")


@given(shape=bn_shapes, dtype=dtypes, seed=seeds, affine=st.booleans(), eps=st.sampled_from([1e-5, 0.1]))
def test_batch_norm_eval_matches_reference(shape, dtype, seed, affine, eps):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = rand(rng, shape, dtype)
    w, b = (rand(rng, (c,), dtype), rand(rng, (c,), dtype)) if affine else (None, None)
    rm = rand(rng, (c,), dtype)
    rv = (rng.random(c) + 0.1).astype(dtype)
    check_op(lambda M: M.batch_norm(x, rm, rv, w, b, training=False, eps=eps),
             inputs=(x, w, b, rm, rv), dtype=dtype, rng=rng)
    (y, mean, invstd), _ = check_op(
        lambda M: M.batch_norm(x, rm, rv, w, b, training=False, eps=eps, return_stats=True),
        inputs=(x, w, b, rm, rv), dtype=dtype, rng=rng)
    assert_close(mean, rm, dtype, "eval return_stats mean")
    assert_close(invstd, 1 / np.sqrt(rv.astype(F64) + eps), dtype, "eval return_stats invstd")


# ----------------------------------------------------------------------------- linear
@given(lead=st.sampled_from([(), (3,), (2, 3), (1,)]), fin=st.integers(1, 5), fout=st.integers(1, 4), dtype=dtypes,
       seed=seeds, with_bias=st.booleans(), need_grad_x=st.booleans())
def test_linear_matches_reference(lead, fin, fout, dtype, seed, with_bias, need_grad_x):
    rng = np.random.default_rng(seed)
    x = rand(rng, lead + (fin,), dtype)
    w = rand(rng, (fout, fin), dtype)
    b = rand(rng, (fout,), dtype) if with_bias else None
    (y,), grads = check_op(lambda M: M.linear(x, w, b),
                           lambda M, g, o: M.linear_backward(g, x, w, need_grad_x=need_grad_x),
                           inputs=(x, w, b), dtype=dtype, rng=rng)
    assert y.shape == lead + (fout,)
    assert (grads[0] is None) == (not need_grad_x)


# ----------------------------------------------------------------------------- API contract
def _conv_case(rng, dtype):
    x, w, b = rand(rng, (2, 4, 6, 7), dtype), rand(rng, (6, 2, 3, 2), dtype), rand(rng, (6,), dtype)
    kw = dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2)
    return x, lambda x_: F.conv2d(x_, w, b, **kw), lambda g, x_: F.conv2d_backward(g, x_, w, **kw)


def _convT_case(rng, dtype):
    x, w = rand(rng, (2, 4, 4, 3), dtype), rand(rng, (4, 3, 3, 2), dtype)
    kw = dict(stride=(2, 1), padding=(1, 0), output_padding=(1, 0), groups=2, dilation=(1, 2))
    return x, lambda x_: F.conv_transpose2d(x_, w, None, **kw), lambda g, x_: F.conv_transpose2d_backward(g, x_, w, **kw)


def _maxpool_case(rng, dtype):
    x = distinct_values(rng, (2, 3, 7, 6), dtype)
    kw = dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), ceil_mode=True)
    return x, lambda x_: F.max_pool2d(x_, **kw, return_indices=True), None


def _avgpool_case(rng, dtype):
    x = rand(rng, (2, 3, 7, 6), dtype)
    kw = dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), ceil_mode=True, count_include_pad=False)
    return x, lambda x_: F.avg_pool2d(x_, **kw), lambda g, x_: F.avg_pool2d_backward(g, np.shape(x_), **kw)


def _unfold_case(rng, dtype):
    x = rand(rng, (2, 3, 6, 5), dtype)
    kw = dict(kernel_size=(2, 3), dilation=(2, 1), padding=(1, 0), stride=(1, 2))
    return x, lambda x_: F.unfold(x_, **kw), None


def _bn_case(rng, dtype):
    x = rand(rng, (4, 3, 2, 5), dtype)
    w, b = rand(rng, (3,), dtype), rand(rng, (3,), dtype)
    return (x, lambda x_: F.batch_norm(x_, None, None, w, b, training=True, return_stats=True),
            lambda g, x_: F.batch_norm_backward(g, x_, w, *F.batch_norm(np.ascontiguousarray(x_, dtype), None, None, w, b, True,
                                                                         return_stats=True)[1:]))


def _linear_case(rng, dtype):
    x, w, b = rand(rng, (3, 4, 6, 5), dtype), rand(rng, (2, 5), dtype), rand(rng, (2,), dtype)
    return x, lambda x_: F.linear(x_, w, b), lambda g, x_: F.linear_backward(g, x_, w)


CASES = {"conv2d": _conv_case, "conv_transpose2d": _convT_case, "max_pool2d": _maxpool_case,
         "avg_pool2d": _avgpool_case, "unfold": _unfold_case, "batch_norm": _bn_case, "linear": _linear_case}


def _noncontiguous_views(x):
    """The same values as x through three non-contiguous layouts."""
    t = np.ascontiguousarray(np.swapaxes(x, -1, -2))
    big = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
    big[..., ::2] = x
    f = np.asfortranarray(x)
    views = {"transposed": np.swapaxes(t, -1, -2), "strided": big[..., ::2], "fortran": f}
    for v in views.values():
        assert not v.flags.c_contiguous and np.array_equal(v, x)
    return views


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("name", sorted(CASES))
def test_noncontiguous_and_list_inputs_give_the_same_result(name, dtype):
    """Transposed / strided / Fortran-ordered views (and nested lists) give the values of the contiguous array."""
    rng = np.random.default_rng(7)
    x, fwd, bwd = CASES[name](rng, dtype)
    want_t = as_tuple(fwd(x))
    grad_out = rand(rng, want_t[0].shape, dtype)
    g_want = bwd(grad_out, x) if bwd is not None else ()
    inputs = list(_noncontiguous_views(x).items())
    if dtype == F32:
        inputs.append(("list", x.tolist()))  # a list becomes float32 (torch's default dtype), not NumPy's float64
    for label, v in inputs:
        for g, w_ in zip(as_tuple(fwd(v)), want_t):
            assert_close(g, w_, dtype, f"{name} forward, {label} input")
        if bwd is not None:
            for label2, gv in _noncontiguous_views(grad_out).items():
                for g, w_ in zip(bwd(gv, v), g_want):
                    assert_close(g, w_, dtype, f"{name} backward, {label} input, {label2} grad_out")


NONCONTIG_F32 = {
    "conv2d": lambda v, c: F.conv2d(v, c(F32, (2, 2, 3, 3)), c(F32, (2,))),
    "conv2d_backward": lambda v, c: F.conv2d_backward(c(F32, (1, 2, 2, 3)), v, c(F32, (2, 2, 3, 3))),
    "conv_transpose2d": lambda v, c: F.conv_transpose2d(v, c(F32, (2, 2, 3, 3))),
    "conv_transpose2d_backward": lambda v, c: F.conv_transpose2d_backward(c(F32, (1, 2, 6, 7)), v,
                                                                          c(F32, (2, 2, 3, 3))),
    "unfold": lambda v, c: F.unfold(v, 2),
    "fold": lambda v, c: F.fold(c(F32, (1, 8, 12)), (4, 5), 2),
    "max_pool2d": lambda v, c: F.max_pool2d(v, 2, return_indices=True)[0],
    "max_pool2d_backward": lambda v, c: F.max_pool2d_backward(c(F32, (1, 2, 2, 2)), np.zeros((1, 2, 2, 2), np.int64),
                                                              (1, 2, 4, 5)),
    "avg_pool2d": lambda v, c: F.avg_pool2d(v, 2),
    "avg_pool2d_backward": lambda v, c: F.avg_pool2d_backward(c(F32, (1, 2, 2, 2)), (1, 2, 4, 5), 2),
    "batch_norm": lambda v, c: F.batch_norm(v, None, None, c(F32, (2,)), None, training=True),
    "batch_norm_eval": lambda v, c: F.batch_norm(v, c(F32, (2,)), np.ones(2, F32), training=False),
    "batch_norm_backward": lambda v, c: F.batch_norm_backward(c(F32, (1, 2, 4, 5)), v, None, np.zeros(2, F32),
                                                              np.ones(2, F32)),
    "linear": lambda v, c: F.linear(v, c(F32, (3, 5))),
    "linear_backward": lambda v, c: F.linear_backward(c(F32, (1, 2, 4, 3)), v, c(F32, (3, 5))),
}


@pytest.mark.parametrize("name", sorted(NONCONTIG_F32))
def test_noncontiguous_float32_inputs_give_float32_outputs(name):
    """A non-contiguous float32 argument (x, weight or grad_out) must not turn the result into float64.

    The module doc promises 'the output has the input's dtype'; every argument here is float32,
    the only difference from the contiguous call is the memory layout."""
    rng = np.random.default_rng(0)
    x = rand(rng, (1, 2, 4, 5), F32)

    def contiguous(dt, shape):
        return rand(rng, shape, dt)

    def strided(dt, shape):  # the same kind of array, through a transposed view
        a = rand(rng, shape[:-2] + shape[-2:][::-1], dt)
        return np.swapaxes(a, -1, -2) if len(shape) >= 2 else a[::-1]

    ref = as_tuple(NONCONTIG_F32[name](x, contiguous))
    assert all(r is None or r.dtype == F32 for r in ref)
    for label, v, c in [("x", np.swapaxes(np.ascontiguousarray(np.swapaxes(x, -1, -2)), -1, -2), contiguous),
                        ("other arguments", x, strided)]:
        out = as_tuple(NONCONTIG_F32[name](v, c))
        dts = [None if o is None else o.dtype for o in out]
        assert all(d is None or d == np.dtype(F32) for d in dts), \
            f"{name}: non-contiguous float32 {label} gave output dtypes {dts}, expected float32"


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("name", sorted(CASES))
def test_outputs_have_the_input_dtype_and_inputs_are_not_modified(name, dtype):
    rng = np.random.default_rng(3)
    x, fwd, bwd = CASES[name](rng, dtype)
    saved = x.copy()
    out = fwd(x)
    outs = out if isinstance(out, tuple) else (out,)
    for o in outs:
        assert o.dtype in (np.dtype(dtype), np.dtype(np.int64))
    if outs[0].dtype != dtype:
        pytest.fail(f"{name}: output dtype {outs[0].dtype} for {np.dtype(dtype)} input")
    if bwd is not None:
        g = rand(rng, outs[0].shape, dtype)
        gs = g.copy()
        for r in bwd(g, x):
            assert r is None or r.dtype == dtype
        np.testing.assert_array_equal(g, gs)
    np.testing.assert_array_equal(x, saved)


def test_batch_norm_modifies_only_the_running_statistics():
    rng = np.random.default_rng(0)
    x, w, b = rand(rng, (5, 3, 2, 2)), rand(rng, (3,)), rand(rng, (3,))
    rm, rv = rand(rng, (3,)), rng.random(3) + 0.5
    saved = [a.copy() for a in (x, w, b, rm, rv)]
    F.batch_norm(x, rm, rv, w, b, training=False)
    for a, s in zip((x, w, b, rm, rv), saved):
        np.testing.assert_array_equal(a, s)  # eval mode modifies nothing
    F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.25)
    for a, s in zip((x, w, b), saved):
        np.testing.assert_array_equal(a, s)
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(rm, 0.75 * saved[3] + 0.25 * mean, rtol=1e-12)
    np.testing.assert_allclose(rv, 0.75 * saved[4] + 0.25 * var, rtol=1e-12)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_unbatched_inputs(dtype):
    """(C, H, W) input behaves as a batch of one, forward and backward."""
    rng = np.random.default_rng(1)
    x = rand(rng, (1, 4, 6, 5), dtype)
    w, b = rand(rng, (6, 2, 3, 2), dtype), rand(rng, (6,), dtype)
    conv = dict(stride=(2, 1), padding=1, dilation=(1, 2), groups=2)
    y1 = F.conv2d(x[0], w, b, **conv)
    assert_close(y1, F.conv2d(x, w, b, **conv)[0], dtype, "conv2d unbatched")
    g = rand(rng, y1.shape, dtype)
    for a, c in zip(F.conv2d_backward(g, x[0], w, **conv), F.conv2d_backward(g[None], x, w, **conv)):
        assert_close(a, c[0] if a.ndim == 3 and c.ndim == 4 else c, dtype, "conv2d_backward unbatched")
    assert F.conv2d_backward(g, x[0], w, **conv)[0].shape == x[0].shape

    wt = rand(rng, (4, 3, 2, 3), dtype)
    ct = dict(stride=2, padding=(0, 1), output_padding=1, groups=1, dilation=1)
    yt = F.conv_transpose2d(x[0], wt, None, **ct)
    assert_close(yt, F.conv_transpose2d(x, wt, None, **ct)[0], dtype, "conv_transpose2d unbatched")
    gt = rand(rng, yt.shape, dtype)
    gx = F.conv_transpose2d_backward(gt, x[0], wt, **ct)[0]
    assert gx.shape == x[0].shape
    assert_close(gx, F.conv_transpose2d_backward(gt[None], x, wt, **ct)[0][0], dtype, "conv_transpose2d_backward")

    xd = distinct_values(rng, x.shape, dtype)
    y, idx = F.max_pool2d(xd[0], 3, 2, 1, return_indices=True)
    y4, idx4 = F.max_pool2d(xd, 3, 2, 1, return_indices=True)
    assert_close(y, y4[0], dtype, "max_pool2d unbatched")
    np.testing.assert_array_equal(idx, idx4[0])
    gp = rand(rng, y.shape, dtype)
    assert_close(F.max_pool2d_backward(gp, idx, xd[0].shape), F.max_pool2d_backward(gp[None], idx4, xd.shape)[0],
                 dtype, "max_pool2d_backward unbatched")

    ya = F.avg_pool2d(x[0], (2, 3), 1, (1, 0), count_include_pad=False)
    assert_close(ya, F.avg_pool2d(x, (2, 3), 1, (1, 0), count_include_pad=False)[0], dtype, "avg_pool2d unbatched")
    ga = rand(rng, ya.shape, dtype)
    assert_close(F.avg_pool2d_backward(ga, x[0].shape, (2, 3), 1, (1, 0), count_include_pad=False),
                 F.avg_pool2d_backward(ga[None], x.shape, (2, 3), 1, (1, 0), count_include_pad=False)[0], dtype,
                 "avg_pool2d_backward unbatched")

    u = F.unfold(x[0], 2, padding=1)
    assert_close(u, F.unfold(x, 2, padding=1)[0], dtype, "unfold unbatched")
    assert_close(F.fold(u, (6, 5), 2, padding=1), F.fold(u[None], (6, 5), 2, padding=1)[0], dtype, "fold unbatched")


@pytest.mark.parametrize("dtype", [F32, F64])
def test_empty_batch(dtype):
    """N = 0: correctly shaped empty outputs, zero parameter gradients."""
    rng = np.random.default_rng(2)
    x = np.zeros((0, 4, 6, 5), dtype)
    w, b = rand(rng, (6, 2, 3, 2), dtype), rand(rng, (6,), dtype)
    y = F.conv2d(x, w, b, stride=2, padding=1, groups=2)
    assert y.shape == (0, 6, 3, 3) and y.dtype == dtype
    gx, gw, gb = F.conv2d_backward(np.zeros(y.shape, dtype), x, w, stride=2, padding=1, groups=2)
    assert gx.shape == x.shape and gw.shape == w.shape and gb.shape == b.shape
    assert not gw.any() and not gb.any()

    wt = rand(rng, (4, 3, 3, 3), dtype)
    yt = F.conv_transpose2d(x, wt, None, stride=2, padding=1, output_padding=1, groups=2)
    assert yt.shape == (0, 6, 12, 10) and yt.dtype == dtype
    gx, gw, gb = F.conv_transpose2d_backward(np.zeros(yt.shape, dtype), x, wt, stride=2, padding=1, output_padding=1,
                                             groups=2)
    assert gx.shape == x.shape and gw.shape == wt.shape and not gw.any() and not gb.any()

    y, idx = F.max_pool2d(x, 2, return_indices=True)
    assert y.shape == idx.shape == (0, 4, 3, 2)
    assert F.max_pool2d_backward(y, idx, x.shape).shape == x.shape
    ya = F.avg_pool2d(x, 2, padding=1)
    assert ya.shape == (0, 4, 4, 3)
    assert F.avg_pool2d_backward(ya, x.shape, 2, padding=1).shape == x.shape
    u = F.unfold(x, 2)
    assert u.shape == (0, 16, 20)
    assert F.fold(u, (6, 5), 2).shape == x.shape

    xl = np.zeros((0, 5), dtype)
    wl, bl = rand(rng, (3, 5), dtype), rand(rng, (3,), dtype)
    assert F.linear(xl, wl, bl).shape == (0, 3)
    gx, gw, gb = F.linear_backward(np.zeros((0, 3), dtype), xl, wl)
    assert gx.shape == (0, 5) and not gw.any() and not gb.any() and gw.shape == wl.shape

    ye = F.batch_norm(x, np.zeros(4, dtype), np.ones(4, dtype), training=False)
    assert ye.shape == x.shape and ye.dtype == dtype


# ----------------------------------------------------------------------------- sigmoid
def _sigmoid64(x):
    x = np.asarray(x, F64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


SIGMOID_PATHS = ["avx512", "avx2", "baseline"]


@contextlib.contextmanager
def sigmoid_path(path):
    """One of the float sigmoid's copies (the kernels' target; skipped where the CPU lacks it)."""
    if path not in _core._isas()[1]:
        pytest.skip(f"CPU without {path}")
    old = _core._set_isa(path)
    try:
        yield
    finally:
        _core._set_isa(old)


@pytest.mark.parametrize("path", SIGMOID_PATHS)
@given(seed=seeds, scale=st.sampled_from([0.1, 3.0, 30.0, 80.0]), n=st.integers(0, 300))
def test_sigmoid_matches_float64_formula(path, seed, scale, n):
    """float32 uses its own polynomial exp: within 4 float32 ulps (relative) of the exact value,
    except that values below 1.21e-38 (x < -87.3, exp(-87.3) = 1.204e-38) are flushed to 0, as documented."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * scale).astype(F32)
    with sigmoid_path(path):
        y = F.sigmoid(x)
    want = _sigmoid64(x)
    assert y.dtype == F32 and y.shape == x.shape
    np.testing.assert_allclose(y, want, rtol=4 * 2.0**-23, atol=1.21e-38)
    y64 = F.sigmoid(x.astype(F64))
    np.testing.assert_allclose(y64, want, rtol=1e-15, atol=0)


@pytest.mark.parametrize("path", SIGMOID_PATHS)
@pytest.mark.parametrize("dtype", [F32, F64])
def test_sigmoid_extremes(path, dtype):
    x = np.array([-np.inf, -1e30, -200, -87, -20, -1e-30, -0.0, 0.0, 1e-30, 20, 200, 1e30, np.inf, np.nan], dtype)
    with sigmoid_path(path):
        y = F.sigmoid(x)
    assert y.dtype == dtype
    assert np.isnan(y[-1]) and np.all(np.isfinite(y[:-1]))
    want = _sigmoid64(x[:-1])
    np.testing.assert_allclose(y[:-1], want, rtol=1e-6 if dtype == F32 else 1e-15, atol=1.21e-38)
    assert y[0] == 0 and y[12] == 1 and y[6] == 0.5 and y[7] == 0.5


@given(seed=seeds, dtype=dtypes)
def test_sigmoid_backward_formula(seed, dtype):
    rng = np.random.default_rng(seed)
    x, g = rand(rng, (3, 5), dtype), rand(rng, (3, 5), dtype)
    y = F.sigmoid(x)
    gx = F.sigmoid_backward(g, y)
    assert_close(gx, g.astype(F64) * y.astype(F64) * (1 - y.astype(F64)), dtype, "grad_x")
    with pytest.raises(ValueError, match="grad_out: expected the shape"):
        F.sigmoid_backward(g[:2], y)


@pytest.mark.parametrize("dtype", [F32, F64])
def test_linear_bias_paths_wide_layers(dtype):
    """Bias add and bias gradient of (N, C) rows, with C across the 256-column blocks of the kernel."""
    rng = np.random.default_rng(0)
    x, w, b = rand(rng, (7, 5), dtype), rand(rng, (600, 5), dtype), rand(rng, (600,), dtype)
    y = F.linear(x, w, b)
    assert_close(y, x.astype(F64) @ w.astype(F64).T + b, dtype, "y")
    g = rand(rng, y.shape, dtype)
    _, _, gb = F.linear_backward(g, x, w)
    assert_close(gb, g.astype(F64).sum(0), dtype, "grad_b")


@pytest.mark.parametrize("dtype", [F32, F64])
def test_weight_and_bias_gradients_written_into_caller_buffers(dtype):
    """grad_weight_out / grad_bias_out: overwritten in place (stale contents ignored), returned, and
    equal to the freshly allocated results; layers use this for their own gradient buffers."""
    rng = np.random.default_rng(5)
    x, w, gy = rand(rng, (3, 4, 7, 7), dtype), rand(rng, (6, 2, 3, 3), dtype), rand(rng, (3, 6, 5, 5), dtype)
    want = F.conv2d_backward(gy, x, w, groups=2)
    gw_buf, gb_buf = np.full(w.shape, np.nan, dtype), np.full(6, np.nan, dtype)
    gx, gw, gb = F.conv2d_backward(gy, x, w, groups=2, grad_weight_out=gw_buf, grad_bias_out=gb_buf)
    assert gw is gw_buf and gb is gb_buf
    for g, r in zip((gx, gw, gb), want):
        np.testing.assert_array_equal(g, r)
    xl, wl, gl = rand(rng, (4, 5), dtype), rand(rng, (3, 5), dtype), rand(rng, (4, 3), dtype)
    want = F.linear_backward(gl, xl, wl)
    gw_buf, gb_buf = np.full(wl.shape, np.nan, dtype), np.full(3, np.nan, dtype)
    gx, gw, gb = F.linear_backward(gl, xl, wl, grad_weight_out=gw_buf, grad_bias_out=gb_buf)
    assert gw is gw_buf and gb is gb_buf
    for g, r in zip((gx, gw, gb), want):
        np.testing.assert_array_equal(g, r)
