"""Fuzzing of the C++ bindings (pyconvnet._core, bypassing the Python checks) and of
pyconvnet.functional with garbage arguments.

Every call must either return a correctly shaped result (finite wherever the
inputs make it finite) or raise ValueError / TypeError; a crash is the failure.
The hypothesis runs happen in a forked child (run_isolated): a segfault or a hang
fails the test with the input that caused it, and the session goes on.

_core signatures (csrc/bindings.cpp): pairs are tuples; conv2d padding is
(top, bottom, left, right); conv_transpose2d padding is a pair.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from pyconvnet import _core
from pyconvnet import functional as F

from _helpers import F32, F64, assert_close, log_case, run_isolated, run_python

OK_ERRORS = (ValueError, TypeError)
# Allocation failures of a (consistently computed) astronomically large output are accepted too.
ALLOC_ERRORS = OK_ERRORS + (MemoryError,)

# Near the int64 limit: every product overflows, or the allocation is refused outright.
BIG = [2**31 - 1, 2**32, 2**62, 2**63 - 1, -2**63]
pos = st.integers(1, 3)
bad_int = st.one_of(st.integers(-2, 0), st.sampled_from(BIG))
dims = st.integers(0, 4)
DTYPES = [F64, F64, F32, np.int32]


def _array(draw, shape):
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**16))
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@st.composite
def shaped(draw, shape, broken=False):
    """An array of ``shape``; with broken=True a dimension is dropped, added or changed."""
    shape = list(shape)
    if broken:
        kind = draw(st.sampled_from(["drop", "add", "change"]))
        if kind == "drop" and shape:
            del shape[draw(st.integers(0, len(shape) - 1))]
        elif kind == "add" or not shape:
            shape.insert(draw(st.integers(0, len(shape))), draw(dims))
        else:
            i = draw(st.integers(0, len(shape) - 1))
            shape[i] = draw(dims.filter(lambda v, old=shape[i]: v != old))
    return _array(draw, tuple(shape))


def _faulty(draw, fault, name, valid, bad):
    """``valid`` unless this case's fault is ``name``: then a value drawn from ``bad``."""
    return draw(bad) if fault == name else valid


def _bad_pair(lo_ok=1):
    ok = st.integers(lo_ok, 3)
    return st.one_of(st.tuples(ok, bad_int), st.tuples(bad_int, ok), st.tuples(bad_int, bad_int))


@st.composite
def conv_calls(draw, transpose=False):
    """Arguments of _core.conv2d_forward / conv_transpose2d_forward: all valid, or with exactly one
    faulty field (a broken shape, a zero / negative / near-int64-limit parameter)."""
    faults = ["x", "w", "bias", "stride", "padding", "dilation", "groups"] + (["output_padding"] if transpose else [])
    fault = draw(st.sampled_from(["none"] * 3 + faults))
    g, n, cg, og = draw(st.integers(1, 2)), draw(st.integers(0, 2)), draw(pos), draw(st.integers(1, 2))
    hw = (draw(st.integers(1, 6)), draw(st.integers(1, 6)))
    k = (draw(pos), draw(pos))
    xs = (n, cg * g) + hw
    ws = (cg * g, og) + k if transpose else (og * g, cg) + k
    x = draw(shaped(xs, broken=fault == "x"))
    w = draw(shaped(ws, broken=fault == "w"))
    bias = draw(st.one_of(st.none(), shaped((og * g,), broken=fault == "bias")))
    stride = _faulty(draw, fault, "stride", (draw(pos), draw(pos)), _bad_pair())
    dil = _faulty(draw, fault, "dilation", (draw(st.integers(1, 2)), draw(st.integers(1, 2))), _bad_pair())
    npad = 2 if transpose else 4
    pad = _faulty(draw, fault, "padding", tuple(draw(st.integers(0, 1)) for _ in range(npad)),
                  st.lists(st.one_of(st.integers(0, 1), bad_int), min_size=npad, max_size=npad).map(tuple))
    groups = _faulty(draw, fault, "groups", g, st.one_of(st.integers(-1, 0), st.integers(g + 1, 4),
                                                         st.sampled_from(BIG)))
    op = _faulty(draw, fault, "output_padding", (0, 0), _bad_pair(0))
    return dict(x=x, w=w, bias=bias, stride=stride, pad=pad, dil=dil, groups=groups, op=op)


def _out(size, k, s, pad_total, d):
    """Exact (big-int) output size of a convolution window."""
    return (size + pad_total - (d * (k - 1) + 1)) // s + 1


def _pool_out(size, k, s, p, d, ceil):
    num = size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil else 0)
    if num < 0:
        return 0
    out = num // s + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


def _check_shape(got, want, what):
    """got: the returned shape; want: the exact (big-int) one. A non-positive exact size means the
    call should have been refused (the C++ size arithmetic wrapped around)."""
    if min(want) < 0 or (len(want) == 4 and min(want[2:]) < 1):
        pytest.fail(f"{what} accepted a geometry whose exact output size is {want} (returned shape {got}): "
                    f"int64 overflow in the size arithmetic")
    assert tuple(got) == tuple(want), f"{what}: shape {got}, expected {want}"


def _finite(a, what):
    assert np.isfinite(a).all(), f"{what}: non-finite values from finite inputs"


def _all_finite(*arrs):
    return all(a is None or np.isfinite(np.asarray(a, F64)).all() for a in arrs)


def _call(log, name, fn, *args):
    """Logs the call, runs it; returns the result or None for an accepted exception."""
    log_case(log, f"_core.{name}{tuple(_describe(a) for a in args)}")
    try:
        return fn(*args)
    except ALLOC_ERRORS:
        return None


def _describe(a):
    if isinstance(a, np.ndarray):
        return f"array(shape={a.shape}, dtype={a.dtype}, min={a.min() if a.size else None}, " \
               f"max={a.max() if a.size else None})"
    return a


# ----------------------------------------------------------------------------- convolution
def _fuzz_conv(log):
    @given(c=conv_calls(), need=st.tuples(st.booleans(), st.booleans(), st.booleans()))
    @example(c=dict(x=np.ones((1, 1, 2, 2)), w=np.ones((1, 1, 1, 1)), bias=None, stride=(1, 1), pad=(2**31 - 1,) * 4,
                    dil=(1, 1), groups=1, op=None), need=(True, True, True))
    @example(c=dict(x=np.ones((1, 1, 1, 1)), w=np.ones((1, 1, 1, 3)), bias=None, stride=(1, 1), pad=(0, 0, 0, 0),
                    dil=(1, 2**63 - 1), groups=1, op=None), need=(True, True, True))  # span 2*(2**63-1)+1 wraps to -1
    def fuzz(c, need):
        x, w, bias, stride, pad, dil, groups = (c[k] for k in ("x", "w", "bias", "stride", "pad", "dil", "groups"))
        y = _call(log, "conv2d_forward", _core.conv2d_forward, x, w, bias, stride, pad, dil, groups)
        if y is None:
            return
        n, ch, h, wd = x.shape
        o, cg, kh, kw = w.shape
        want = (n, o, _out(h, kh, stride[0], pad[0] + pad[1], dil[0]), _out(wd, kw, stride[1], pad[2] + pad[3], dil[1]))
        _check_shape(y.shape, want, "conv2d_forward")
        assert cg * groups == ch and groups >= 1 and o % groups == 0
        if _all_finite(x, w, bias):
            _finite(y, "conv2d_forward")
        gy = np.ones(y.shape, y.dtype)
        r = _call(log, "conv2d_backward", _core.conv2d_backward, gy, x, w, stride, pad, dil, groups, *need)
        assert r is not None, "conv2d_backward rejected what conv2d_forward accepted"
        for g, shape, flag in zip(r, (x.shape, w.shape, (o,)), need):
            assert (g is None) == (not flag)
            if g is not None:
                assert g.shape == shape
                if _all_finite(x, w):
                    _finite(g, "conv2d_backward")
        bad = _call(log, "conv2d_backward", _core.conv2d_backward, gy[..., :-1], x, w, stride, pad, dil, groups)
        assert bad is None, "conv2d_backward accepted a grad_output of the wrong shape"

    fuzz()


def test_core_conv2d_fuzz():
    run_isolated(_fuzz_conv)


def _fuzz_conv_transpose(log):
    @given(c=conv_calls(transpose=True))
    def fuzz(c):
        x, w, bias, stride, pad, op, dil, groups = (c[k] for k in ("x", "w", "bias", "stride", "pad", "op", "dil",
                                                                   "groups"))
        y = _call(log, "conv_transpose2d_forward", _core.conv_transpose2d_forward, x, w, bias, stride, pad, op, dil,
                  groups)
        if y is None:
            return
        n, ch, h, wd = x.shape
        _, og, kh, kw = w.shape
        size = [(s - 1) * st_ - 2 * p + d * (k - 1) + o + 1
                for s, st_, p, d, k, o in zip((h, wd), stride, pad, dil, (kh, kw), op)]
        want = (n, og * groups, size[0], size[1])
        _check_shape(y.shape, want, "conv_transpose2d_forward")
        assert all(o < s or o < d for o, s, d in zip(op, stride, dil)), "accepted a bad output_padding"
        if _all_finite(x, w, bias):
            _finite(y, "conv_transpose2d_forward")
        gy = np.ones(y.shape, y.dtype)
        r = _call(log, "conv_transpose2d_backward", _core.conv_transpose2d_backward, gy, x, w, stride, pad, op, dil,
                  groups)
        assert r is not None, "conv_transpose2d_backward rejected what the forward accepted"
        assert r[0].shape == x.shape and r[1].shape == w.shape and r[2].shape == (og * groups,)
        if _all_finite(x, w):
            for g in r:
                _finite(g, "conv_transpose2d_backward")
        bad = _call(log, "conv_transpose2d_backward", _core.conv_transpose2d_backward, gy[:, :, 1:], x, w, stride, pad,
                    op, dil, groups)
        assert bad is None, "conv_transpose2d_backward accepted a grad_output of the wrong shape"

    fuzz()


def test_core_conv_transpose2d_fuzz():
    run_isolated(_fuzz_conv_transpose)


@st.composite
def window_calls(draw, pool=False):
    """(x, kernel, stride, padding, dilation) for unfold / pooling: all valid or exactly one fault."""
    fault = draw(st.sampled_from(["none"] * 3 + ["x", "kernel", "stride", "padding", "dilation"]))
    k = _faulty(draw, fault, "kernel", (draw(pos), draw(pos)), _bad_pair())
    kk = k if fault != "kernel" else (1, 1)
    hw = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    x = draw(shaped((draw(st.integers(0, 2)), draw(st.integers(0, 2))) + hw, broken=fault == "x"))
    s = _faulty(draw, fault, "stride", (draw(pos), draw(pos)), _bad_pair())
    d = _faulty(draw, fault, "dilation", (draw(st.integers(1, 2)), draw(st.integers(1, 2))), _bad_pair())
    good_p = (draw(st.integers(0, kk[0] // 2)), draw(st.integers(0, kk[1] // 2))) if pool else \
        (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    p = _faulty(draw, fault, "padding", good_p, _bad_pair(0) if not pool else
                st.one_of(_bad_pair(0), st.tuples(st.integers(kk[0] // 2 + 1, 4), st.integers(0, kk[1] // 2))))
    return x, k, s, p, d


def _fuzz_unfold_fold(log):
    @given(c=window_calls(), out_fault=st.sampled_from(["none", "none", "cols", "output_size"]), seed=st.integers(0, 99))
    @example(c=(np.ones((1, 1, 2, 2)), (1, 1), (1, 1), (2**31 - 1, 2**31 - 1), (1, 1)), out_fault="none", seed=0)
    def fuzz(c, out_fault, seed):
        x, k, s, p, d = c
        y = _call(log, "unfold", _core.unfold, x, k, d, p, s)
        if y is not None:
            n, ch, h, w = x.shape
            oh, ow = _out(h, k[0], s[0], 2 * p[0], d[0]), _out(w, k[1], s[1], 2 * p[1], d[1])
            _check_shape((n, ch, oh, ow), (n, ch, oh, ow), "unfold")
            want = (n, ch * k[0] * k[1], oh * ow)
            assert min(k) >= 1 and y.shape == want, f"unfold shape {y.shape}, exact {want} (int64 overflow?)"
            if _all_finite(x):
                _finite(y, "unfold")
            cols, out = y, x.shape[2:]
        else:  # fold with this geometry and a plausible cols
            cols, out = np.ones((1, 2 * max(1, k[0] * k[1]) if abs(k[0] * k[1]) < 100 else 2, 4)), (3, 3)
        rng = np.random.default_rng(seed)
        if out_fault == "cols":
            cols = cols[..., : max(0, cols.shape[-1] - 1)] if rng.random() < 0.5 else cols[:, 1:]
        elif out_fault == "output_size":
            out = (out[0] + int(rng.integers(-2, 3)), out[1] + int(rng.choice([0, -2**31, 2**31 - 1])))
        z = _call(log, "fold", _core.fold, cols, out, k, d, p, s)
        if z is not None:
            n, r, ll = cols.shape
            oh, ow = _out(out[0], k[0], s[0], 2 * p[0], d[0]), _out(out[1], k[1], s[1], 2 * p[1], d[1])
            _check_shape(z.shape[:2] + (oh, ow), z.shape[:2] + (oh, ow), "fold (blocks per image)")
            assert ll == oh * ow, "fold accepted cols whose block count does not match"
            want = (n, r // (k[0] * k[1]), out[0], out[1])
            assert z.shape == want, f"fold shape {z.shape}, expected {want}"
            if _all_finite(cols):
                _finite(z, "fold")

    fuzz()


def test_core_unfold_fold_fuzz():
    run_isolated(_fuzz_unfold_fold)


# ----------------------------------------------------------------------------- pooling
def _fuzz_pool(log):
    @given(c=window_calls(pool=True), ceil=st.booleans(), cip=st.booleans(), fault=st.sampled_from(
        ["none", "none", "grad_output", "indices", "index_value", "input_shape"]), seed=st.integers(0, 99))
    @example(c=(np.zeros((1, 1, 4, 5)), (2**63 - 1, 3), (3, 1), (0, 0), (2, 1)), ceil=False, cip=True, fault="none", seed=0)
    def fuzz(c, ceil, cip, fault, seed):
        x, k, s, p, d = c
        rng = np.random.default_rng(seed)
        r = _call(log, "max_pool2d_forward", _core.max_pool2d_forward, x, k, s, p, d, ceil)
        if r is not None:
            y, idx = r
            n, ch, h, w = x.shape
            want = (n, ch, _pool_out(h, k[0], s[0], p[0], d[0], ceil), _pool_out(w, k[1], s[1], p[1], d[1], ceil))
            _check_shape(y.shape, want, "max_pool2d_forward")
            assert idx.shape == y.shape
            assert ((idx >= -1) & (idx < h * w)).all(), "max_pool2d_forward index outside the input plane"
            if _all_finite(x):
                assert (np.isfinite(y) | (idx == -1)).all()
            gy, shape = np.ones(y.shape, y.dtype), list(x.shape)
            if fault == "grad_output":
                gy = gy[:, :, :, 1:] if rng.random() < 0.5 else gy[None]
            elif fault == "indices":
                idx = idx[..., 1:]
            elif fault == "index_value" and idx.size:
                idx = idx.copy()
                idx.flat[int(rng.integers(idx.size))] = rng.choice([-2, h * w, 2**62, -2**63])
            elif fault == "input_shape":
                shape[int(rng.integers(4))] = int(rng.choice([-1, 0, 2**62, 2**63 - 1]))
            g = _call(log, "max_pool2d_backward", _core.max_pool2d_backward, gy, idx, shape)
            if g is not None:
                assert g.shape == tuple(shape) and gy.shape == idx.shape and gy.ndim == 4
                assert ((idx >= -1) & (idx < shape[2] * shape[3])).all(), "accepted an out-of-range index"
                np.testing.assert_allclose(g.sum(), np.where(idx >= 0, gy, 0).sum(), rtol=1e-6)
            else:
                assert fault != "none", "max_pool2d_backward rejected the forward's own indices"
        y = _call(log, "avg_pool2d_forward", _core.avg_pool2d_forward, x, k, s, p, ceil, cip)
        if y is not None:
            n, ch, h, w = x.shape
            want = (n, ch, _pool_out(h, k[0], s[0], p[0], 1, ceil), _pool_out(w, k[1], s[1], p[1], 1, ceil))
            _check_shape(y.shape, want, "avg_pool2d_forward")
            if _all_finite(x):
                _finite(y, "avg_pool2d_forward")
            gy, shape = np.ones(y.shape, y.dtype), list(x.shape)
            if fault == "grad_output":
                gy = gy[:, :, 1:]
            elif fault == "input_shape":
                shape[int(rng.integers(4))] = int(rng.choice([-1, 2**62, 2**63 - 1]))
            g = _call(log, "avg_pool2d_backward", _core.avg_pool2d_backward, gy, shape, k, s, p, ceil, cip)
            if g is not None:
                assert g.shape == tuple(shape)
                oh, ow = _pool_out(shape[2], k[0], s[0], p[0], 1, ceil), _pool_out(shape[3], k[1], s[1], p[1], 1, ceil)
                assert gy.shape == (shape[0], shape[1], oh, ow), "avg_pool2d_backward accepted a wrong grad_output"
                _finite(g, "avg_pool2d_backward")
            else:
                assert fault in ("grad_output", "input_shape"), "avg_pool2d_backward rejected a valid call"

    fuzz()


def test_core_pool_fuzz():
    run_isolated(_fuzz_pool)


# ----------------------------------------------------------------------------- batch norm, linear, relu
@st.composite
def bn_case(draw):
    n, c = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    shape = (n, c) + tuple(draw(st.lists(st.integers(0, 3), max_size=2)))
    vecs = [draw(st.one_of(st.none(), shaped((c,)))) for _ in range(4)]
    return draw(shaped(shape)), vecs, draw(shaped(shape))


@st.composite
def linear_case(draw):
    n, fin, fout = draw(st.integers(0, 3)), draw(st.integers(0, 4)), draw(st.integers(0, 3))
    return (draw(shaped((n, fin))), draw(shaped((fout, fin))), draw(st.one_of(st.none(), shaped((fout,)))),
            draw(shaped((n, fout))))


def _fuzz_bn_linear(log):
    @given(bn=bn_case(), lin=linear_case(),
           eps=st.sampled_from([1e-5, 1e-5, 0.1, 0.0, -1.0, float("nan"), float("inf")]), need=st.booleans())
    def fuzz(bn, lin, eps, need):
        x, (g, b, m, v), gy = bn
        r = _call(log, "batch_norm_train", _core.batch_norm_train, x, g, b, eps)
        if r is not None:
            y, mean, var, invstd = r
            assert x.ndim >= 2 and y.shape == x.shape and mean.shape == var.shape == invstd.shape == (x.shape[1],)
            assert eps > 0 and (x.size >= 1 or x.shape[1] == 0)
            if _all_finite(x, g, b) and np.isfinite(eps):
                _finite(y, "batch_norm_train")
            r2 = _call(log, "batch_norm_backward", _core.batch_norm_backward, np.ones(y.shape, y.dtype), x, g, mean,
                       invstd)
            assert r2 is not None and r2[0].shape == x.shape
            if _all_finite(x, g) and np.isfinite(eps):
                _finite(r2[0], "batch_norm_backward")
        if m is not None and v is not None:
            y = _call(log, "batch_norm_eval", _core.batch_norm_eval, x, m, v, g, b, eps)
            if y is not None:
                assert y.shape == x.shape and m.shape == v.shape == (x.shape[1],)
            r = _call(log, "batch_norm_backward", _core.batch_norm_backward, gy, x, g, m, v)
            if r is not None:
                assert gy.shape == x.shape and r[0].shape == x.shape
                assert r[1].shape == r[2].shape == (x.shape[1],)
        xl, w, bl, gl = lin
        y = _call(log, "linear_forward", _core.linear_forward, xl, w, bl)
        if y is not None:
            assert xl.ndim == 2 and w.ndim == 2 and y.shape == (xl.shape[0], w.shape[0])
            if _all_finite(xl, w, bl):
                _finite(y, "linear_forward")
        r = _call(log, "linear_backward", _core.linear_backward, gl, xl, w, need)
        if r is not None:
            assert gl.shape == (xl.shape[0], w.shape[0]) and r[1].shape == w.shape and r[2].shape == (w.shape[0],)
            assert (r[0] is None) == (not need)
            if need:
                assert r[0].shape == xl.shape
        y = _call(log, "relu_forward", _core.relu_forward, x)
        assert y is not None and y.shape == x.shape
        r = _call(log, "relu_backward", _core.relu_backward, gy, x)
        if r is not None:
            assert gy.shape == x.shape == r.shape

    fuzz()


def test_core_batch_norm_linear_relu_fuzz():
    run_isolated(_fuzz_bn_linear)


def _fuzz_sizes(log):
    @given(vals=st.lists(st.one_of(st.integers(-3, 8), st.sampled_from(BIG)), min_size=6, max_size=6),
           ceil=st.booleans())
    def fuzz(vals, ceil):
        size, k, s, p, d, op = vals
        valid = size >= 0 and k >= 1 and s >= 1 and p >= 0 and d >= 1 and op >= 0
        if not valid:  # invalid values must be refused (ValueError) by every helper, never crash
            for name, args in (("conv_out_size", (size, k, s, p, d)),
                               ("conv_transpose_out_size", (size, k, s, p, d, op)),
                               ("pool_out_size", (size, k, s, p, d, ceil))):
                assert _call(log, name, getattr(_core, name), *args) is None, f"_core.{name}{args} accepted"
            return
        exact = {
            "conv_out_size": max(0, _out(size, k, s, p, d)) if size + p >= d * (k - 1) + 1 else 0,
            "conv_transpose_out_size": (size - 1) * s - 2 * p + d * (k - 1) + op + 1,
            "pool_out_size": _pool_out(size, k, s, p, d, ceil),
        }
        for name, args in (("conv_out_size", (size, k, s, p, d)), ("conv_transpose_out_size", (size, k, s, p, d, op)),
                           ("pool_out_size", (size, k, s, p, d, ceil))):
            got = _call(log, name, getattr(_core, name), *args)
            if got is not None and valid:
                # a size that does not fit in int64 must be refused, never wrapped around
                assert got == exact[name], f"_core.{name}{args} = {got}, exact value {exact[name]}"

    fuzz()


def test_core_size_helpers_fuzz():
    run_isolated(_fuzz_sizes)


# ----------------------------------------------------------------------------- functional with garbage
GARBAGE = [None, "x", "same", 1.5, -1, 0, 3, 2**70, -2**70, True, (1,), (2, 2), (1, 2, 3), [], [[1.0]], {}, object(),
           float("nan"), np.zeros(()), np.ones((2, 2)), np.ones((1, 2, 3, 3)), np.ones((1, 2, 3, 3), np.float32),
           np.ones((2, 3, 4, 4), int), np.ones((2, 3), np.float16), np.ones((0, 1, 1, 1)), np.ones(3), b"ab",
           np.arange(4).reshape(1, 1, 2, 2), [[[[1.0, 2.0]]]], 1j]
# The API under test (functional also exports newer ops, fuzzed by their own tests).
FUNCS = ["conv2d", "conv2d_backward", "conv_transpose2d", "conv_transpose2d_backward", "unfold", "fold", "max_pool2d",
         "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward", "batch_norm", "batch_norm_backward", "linear",
         "linear_backward", "relu", "relu_backward", "conv2d_output_size", "pool2d_output_size"]


def _fuzz_functional(log):
    @given(name=st.sampled_from(FUNCS),
           args=st.lists(st.one_of(st.sampled_from(range(len(GARBAGE))), st.integers(-3, 6).map(lambda v: ("int", v))),
                         max_size=8))
    def fuzz(name, args):
        vals = [v[1] if isinstance(v, tuple) else GARBAGE[v] for v in args]
        log_case(log, f"F.{name}{tuple(vals)!r}")
        try:
            getattr(F, name)(*vals)
        except OK_ERRORS:
            pass

    fuzz()


def test_functional_with_garbage_arguments():
    """Any argument list: a result, or ValueError/TypeError (no IndexError, AttributeError, OverflowError, crash)."""
    run_isolated(_fuzz_functional)


# ----------------------------------------------------------------------------- regressions
@given(n=st.integers(1, 2), g=st.integers(1, 2), k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       hw=st.tuples(st.integers(1, 5), st.integers(1, 5)), s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       d=st.tuples(st.integers(1, 3), st.integers(1, 3)), pad=st.tuples(*[st.integers(0, 2)] * 4),
       seed=st.integers(0, 2**16))
@example(n=1, g=1, k=(2, 2), hw=(2, 2), s=(1, 1), d=(2, 1), pad=(0, 1, 0, 0), seed=0)
def test_core_conv2d_asymmetric_padding_is_explicit_zero_padding(n, g, k, hw, s, d, pad, seed):
    """The binding's 4-tuple padding (top, bottom, left, right) equals zero-padding the input by hand,
    forward and backward (functional only produces asymmetric padding for 'same', but _core accepts any)."""
    rng = np.random.default_rng(seed)
    x, w, b = rng.standard_normal((n, 2 * g) + hw), rng.standard_normal((2 * g, 2) + k), rng.standard_normal(2 * g)
    xp = np.pad(x, [(0, 0), (0, 0), pad[:2], pad[2:]])
    try:
        want = F.conv2d(xp, w, b, s, 0, d, g)
    except ValueError:
        with pytest.raises(ValueError):
            _core.conv2d_forward(x, w, b, s, pad, d, g)
        return
    y = _core.conv2d_forward(x, w, b, s, pad, d, g)
    assert_close(y, want, F64, f"_core.conv2d_forward with padding {pad}")
    gy = rng.standard_normal(y.shape)
    gx, gw, gb = _core.conv2d_backward(gy, x, w, s, pad, d, g)
    gxp, gw2, gb2 = F.conv2d_backward(gy, xp, w, s, 0, d, g)
    assert_close(gx, gxp[:, :, pad[0]:pad[0] + hw[0], pad[2]:pad[2] + hw[1]], F64, "grad_x")
    assert_close(gw, gw2, F64, "grad_weight")
    assert_close(gb, gb2, F64, "grad_bias")


CORE_CRASHES = {
    "unfold padding 2**31-1 (OH*OW = 2**64 wraps to 0)":
        "_core.unfold(np.zeros((1, 1, 2, 2)), (1, 1), (1, 1), (2**31 - 1, 2**31 - 1), (1, 1))",
    "fold padding 2**31-1 with an empty cols":
        "_core.fold(np.zeros((1, 1, 0)), (2, 2), (1, 1), (1, 1), (2**31 - 1, 2**31 - 1), (1, 1))",
    "max_pool2d_forward dilation 2**60 (window span wraps)":
        "_core.max_pool2d_forward(np.zeros((1, 1, 3, 3)), (17, 17), (1, 1), (0, 0), (2**60, 2**60), False)",
    "conv2d_forward padding 2**31-1 on all sides":
        "_core.conv2d_forward(np.ones((1, 1, 2, 2)), np.ones((1, 1, 1, 1)), None, (1, 1), (2**31 - 1,) * 4, (1, 1), 1)",
    "conv_transpose2d_forward dilation 2**62":
        "_core.conv_transpose2d_forward(np.ones((1, 1, 3, 3)), np.ones((1, 1, 5, 5)), None, (1, 1), (0, 0), (0, 0), "
        "(2**62, 2**62), 1)",
}


@pytest.mark.parametrize("case", sorted(CORE_CRASHES))
def test_core_overflowing_geometry_is_rejected(case):
    """int64 overflow in the bindings' size arithmetic must not reach the kernels (in a subprocess: these crashed)."""
    r = run_python("import numpy as np\nfrom pyconvnet import _core\n"
                   f"y = {CORE_CRASHES[case]}\nprint('SHAPE', np.shape(y[0] if isinstance(y, tuple) else y))\n")
    assert r.returncode is not None, f"{case}: hang"
    assert r.returncode >= 0, f"{case}: killed by signal {-r.returncode} (crash)"
    assert r.returncode != 0, f"{case}: accepted, returned shape {r.stdout.split('SHAPE')[-1].strip()}"
    assert "ValueError" in r.stderr or "TypeError" in r.stderr, r.stderr[-2000:]
