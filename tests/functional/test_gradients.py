"""Every *_backward of pyconvnet.functional against central finite differences (float64).

The fake loss is sum(forward(...) * dout) with a random dout; the tolerance is
scale-aware, tol * max(|analytic|, |numeric|, 1). Small tensors are checked
element by element, large ones along random directions (check_grad).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from pyconvnet import functional as F

from _helpers import check_grad, conv_configs, conv_transpose_configs, distinct_values, pool_configs, rand, seeds


# Thousands of tiny kernels: single-threaded (see conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def _dout(rng, y):
    return rng.standard_normal(y.shape)


@given(cfg=conv_configs(max_hw=6), seed=seeds)
def test_conv2d_gradients(cfg, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, (cfg["n"], cfg["cin"]) + cfg["hw"])
    w = rand(rng, (cfg["cout"], cfg["cin"] // cfg["groups"]) + cfg["k"])
    b = rand(rng, (cfg["cout"],))
    geo = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"])
    dout = _dout(rng, F.conv2d(x, w, b, **geo))
    gx, gw, gb = F.conv2d_backward(dout, x, w, **geo)
    check_grad(lambda: F.conv2d(x, w, b, **geo), [x, w, b], [gx, gw, gb], dout, rng=rng, names=["x", "weight", "bias"])


@given(cfg=conv_transpose_configs(max_hw=4), seed=seeds)
def test_conv_transpose2d_gradients(cfg, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, (cfg["n"], cfg["cin"]) + cfg["hw"])
    w = rand(rng, (cfg["cin"], cfg["cout"] // cfg["groups"]) + cfg["k"])
    b = rand(rng, (cfg["cout"],))
    geo = dict(stride=cfg["stride"], padding=cfg["padding"], output_padding=cfg["output_padding"],
               groups=cfg["groups"], dilation=cfg["dilation"])
    dout = _dout(rng, F.conv_transpose2d(x, w, b, **geo))
    gx, gw, gb = F.conv_transpose2d_backward(dout, x, w, **geo)
    check_grad(lambda: F.conv_transpose2d(x, w, b, **geo), [x, w, b], [gx, gw, gb], dout, rng=rng,
               names=["x", "weight", "bias"])


def test_conv2d_gradients_large_directional():
    """A tensor too large for per-element differences: directional derivatives (the threaded, blocked paths)."""
    rng = np.random.default_rng(5)
    x, w, b = rand(rng, (12, 6, 10, 9)), rand(rng, (8, 3, 3, 3)), rand(rng, (8,))
    geo = dict(stride=(1, 2), padding=1, dilation=(2, 1), groups=2)
    dout = _dout(rng, F.conv2d(x, w, b, **geo))
    gx, gw, gb = F.conv2d_backward(dout, x, w, **geo)
    check_grad(lambda: F.conv2d(x, w, b, **geo), [x, w, b], [gx, gw, gb], dout, rng=rng, max_elems=16,
               names=["x", "weight", "bias"])


@given(cfg=conv_configs(allow_same=False, max_hw=6), seed=seeds)
def test_unfold_fold_gradients(cfg, seed):
    """unfold and fold are linear maps and each other's adjoint: the gradient of one is the other."""
    rng = np.random.default_rng(seed)
    x = rand(rng, (cfg["n"], cfg["cin"]) + cfg["hw"])
    pad = 0 if cfg["padding"] == "valid" else cfg["padding"]
    geo = dict(kernel_size=cfg["k"], dilation=cfg["dilation"], padding=pad, stride=cfg["stride"])
    dout = _dout(rng, F.unfold(x, **geo))
    check_grad(lambda: F.unfold(x, **geo), [x], [F.fold(dout, cfg["hw"], **geo)], dout, names=["unfold x"])
    cols = rand(rng, dout.shape)
    dimg = rng.standard_normal(x.shape)
    check_grad(lambda: F.fold(cols, cfg["hw"], **geo), [cols], [F.unfold(dimg, **geo)], dimg, rng=rng,
               names=["fold cols"])


@given(cfg=pool_configs(), seed=seeds)
def test_max_pool2d_gradient(cfg, seed):
    rng = np.random.default_rng(seed)
    x = distinct_values(rng, (cfg["n"], cfg["c"]) + cfg["hw"])  # no ties, gaps >> eps: no kinks
    geo = dict(kernel_size=cfg["k"], stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"],
               ceil_mode=cfg["ceil_mode"])
    y, idx = F.max_pool2d(x, **geo, return_indices=True)
    assume(np.isfinite(y).all())  # a window wholly in the padding has no gradient to check
    dout = _dout(rng, y)
    gx = F.max_pool2d_backward(dout, idx, x.shape)
    check_grad(lambda: F.max_pool2d(x, **geo), [x], [gx], dout, names=["x"])


@given(cfg=pool_configs(dilation=False), seed=seeds, cip=st.booleans())
def test_avg_pool2d_gradient(cfg, seed, cip):
    rng = np.random.default_rng(seed)
    x = rand(rng, (cfg["n"], cfg["c"]) + cfg["hw"])
    geo = dict(kernel_size=cfg["k"], stride=cfg["stride"], padding=cfg["padding"], ceil_mode=cfg["ceil_mode"],
               count_include_pad=cip)
    dout = _dout(rng, F.avg_pool2d(x, **geo))
    gx = F.avg_pool2d_backward(dout, x.shape, **geo)
    check_grad(lambda: F.avg_pool2d(x, **geo), [x], [gx], dout, names=["x"])


@given(shape=st.sampled_from([(4, 3), (2, 3, 4), (2, 2, 3, 2), (3, 1, 1, 2), (2, 1)]), seed=seeds,
       affine=st.booleans(), eps=st.sampled_from([1e-5, 0.1]))
def test_batch_norm_training_gradients(shape, seed, affine, eps):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = rand(rng, shape) * 1.5 + 0.5
    w = rand(rng, (c,)) if affine else None
    b = rand(rng, (c,)) if affine else None
    y, mean, invstd = F.batch_norm(x, None, None, w, b, training=True, eps=eps, return_stats=True)
    dout = _dout(rng, y)
    gx, gw, gb = F.batch_norm_backward(dout, x, w, mean, invstd)

    def fwd():
        return F.batch_norm(x, None, None, w, b, training=True, eps=eps)

    if affine:
        check_grad(fwd, [x, w, b], [gx, gw, gb], dout, tol=1e-5, names=["x", "weight", "bias"])
    else:
        check_grad(fwd, [x], [gx], dout, tol=1e-5, names=["x"])
        # weight=None is weight=ones: its gradient is still returned
        ones, zeros = np.ones(c), np.zeros(c)
        check_grad(lambda: F.batch_norm(x, None, None, ones, zeros, training=True, eps=eps), [ones, zeros],
                   [gw, gb], dout, tol=1e-5, names=["implicit weight", "implicit bias"])


def test_batch_norm_gradient_large_directional():
    rng = np.random.default_rng(3)
    x, w, b = rand(rng, (16, 5, 6, 7)) * 2 - 1, rand(rng, (5,)), rand(rng, (5,))
    y, mean, invstd = F.batch_norm(x, None, None, w, b, training=True, return_stats=True)
    dout = _dout(rng, y)
    gx, gw, gb = F.batch_norm_backward(dout, x, w, mean, invstd)
    check_grad(lambda: F.batch_norm(x, None, None, w, b, training=True), [x, w, b], [gx, gw, gb], dout, tol=1e-5,
               rng=rng, max_elems=8, names=["x", "weight", "bias"])


@given(lead=st.sampled_from([(), (3,), (2, 3)]), fin=st.integers(1, 5), fout=st.integers(1, 4), seed=seeds)
def test_linear_gradients(lead, fin, fout, seed):
    rng = np.random.default_rng(seed)
    x, w, b = rand(rng, lead + (fin,)), rand(rng, (fout, fin)), rand(rng, (fout,))
    dout = _dout(rng, F.linear(x, w, b))
    gx, gw, gb = F.linear_backward(dout, x, w)
    check_grad(lambda: F.linear(x, w, b), [x, w, b], [gx, gw, gb], dout, names=["x", "weight", "bias"])


def test_gradient_check_can_fail():
    """The checker itself: a wrong gradient (conv2d's grad_x off by 1%) must be caught."""
    rng = np.random.default_rng(0)
    x, w = rand(rng, (1, 2, 4, 4)), rand(rng, (3, 2, 2, 2))
    dout = _dout(rng, F.conv2d(x, w))
    gx, gw, _ = F.conv2d_backward(dout, x, w)
    with pytest.raises(AssertionError, match="x"):
        check_grad(lambda: F.conv2d(x, w), [x], [gx * 1.01], dout, names=["x"])
    with pytest.raises(AssertionError, match="directional"):
        check_grad(lambda: F.conv2d(x, w), [w], [gw * 1.01], dout, max_elems=1, names=["w"])
