"""Algebraic properties of pyconvnet.functional that hold whatever the implementation:
adjoint pairs, overlap counts, argmax routing, normalisation statistics, special cases."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyconvnet import functional as F

from _helpers import (F32, F64, assert_close, conv_configs, distinct_values, dtypes, pool_configs, rand, seeds,
                      span)


# Thousands of tiny kernels: single-threaded (see conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def _sym_pad(cfg):
    p = cfg["padding"]
    if p == "valid":
        return (0, 0)
    return (p, p) if isinstance(p, int) else tuple(p)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


@given(cfg=conv_configs(allow_same=False), dtype=dtypes, seed=seeds)
def test_conv2d_grad_x_is_conv_transpose2d_of_grad_out(cfg, dtype, seed):
    """conv2d_backward's grad_x == conv_transpose2d(grad_out, weight) with the same geometry and the
    output_padding that gives back the input size."""
    rng = np.random.default_rng(seed)
    x = rand(rng, (cfg["n"], cfg["cin"]) + cfg["hw"], dtype)
    w = rand(rng, (cfg["cout"], cfg["cin"] // cfg["groups"]) + cfg["k"], dtype)
    stride, pad, dil = _pair(cfg["stride"]), _sym_pad(cfg), cfg["dilation"]
    y = F.conv2d(x, w, None, stride, pad, dil, cfg["groups"])
    g = rand(rng, y.shape, dtype)
    gx, _, _ = F.conv2d_backward(g, x, w, stride, pad, dil, cfg["groups"])
    op = tuple(h + 2 * p - ((o - 1) * s + span(k, d)) for h, p, o, s, k, d in
               zip(cfg["hw"], pad, y.shape[2:], stride, cfg["k"], dil))
    assert all(0 <= o < s for o, s in zip(op, stride))
    gt = F.conv_transpose2d(g, w, None, stride, pad, op, cfg["groups"], dil)
    assert gt.shape == x.shape
    assert_close(gx, gt, dtype, "conv2d grad_x vs conv_transpose2d")


@given(cfg=conv_configs(allow_same=False), seed=seeds)
def test_conv2d_and_conv_transpose2d_are_adjoint(cfg, seed):
    """<conv2d(x, w), y> == <x, conv_transpose2d(y, w)>: same weight, same geometry."""
    rng = np.random.default_rng(seed)
    x = rand(rng, (cfg["n"], cfg["cin"]) + cfg["hw"])
    w = rand(rng, (cfg["cout"], cfg["cin"] // cfg["groups"]) + cfg["k"])
    stride, pad, dil = _pair(cfg["stride"]), _sym_pad(cfg), cfg["dilation"]
    cx = F.conv2d(x, w, None, stride, pad, dil, cfg["groups"])
    y = rand(rng, cx.shape)
    op = tuple(h + 2 * p - ((o - 1) * s + span(k, d)) for h, p, o, s, k, d in
               zip(cfg["hw"], pad, cx.shape[2:], stride, cfg["k"], dil))
    ty = F.conv_transpose2d(y, w, None, stride, pad, op, cfg["groups"], dil)
    lhs, rhs = float(np.sum(cx * y)), float(np.sum(x * ty))
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs), float(np.abs(cx * y).sum()))


@given(cfg=conv_configs(allow_same=False), dtype=dtypes, seed=seeds)
def test_fold_of_unfold_is_x_times_overlap_count(cfg, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, (cfg["n"], cfg["cin"]) + cfg["hw"], dtype)
    geo = dict(kernel_size=cfg["k"], dilation=cfg["dilation"], padding=_sym_pad(cfg), stride=cfg["stride"])
    count = F.fold(F.unfold(np.ones_like(x), **geo), cfg["hw"], **geo)
    assert count.dtype == dtype and np.all(count == np.round(count)) and count.min() >= 0
    assert_close(F.fold(F.unfold(x, **geo), cfg["hw"], **geo), x * count, dtype, "fold(unfold(x))")
    # the count is the number of windows covering each pixel, computed independently
    s, p, k, d = _pair(cfg["stride"]), _sym_pad(cfg), cfg["k"], cfg["dilation"]
    oh, ow = F.conv2d_output_size(cfg["hw"], k, s, p, d)
    want = np.zeros(cfg["hw"])
    for i in range(oh):
        for j in range(ow):
            for a in range(k[0]):
                for b in range(k[1]):
                    r, c = i * s[0] - p[0] + a * d[0], j * s[1] - p[1] + b * d[1]
                    if 0 <= r < cfg["hw"][0] and 0 <= c < cfg["hw"][1]:
                        want[r, c] += 1
    np.testing.assert_array_equal(count[0, 0], want)


@given(cfg=conv_configs(allow_same=False, max_n=2), seed=seeds)
def test_conv2d_equals_weight_matrix_times_unfold(cfg, seed):
    """conv2d == (weight as a matrix) @ unfold(x), group by group (the im2col identity)."""
    rng = np.random.default_rng(seed)
    g = cfg["groups"]
    x = rand(rng, (cfg["n"], cfg["cin"]) + cfg["hw"])
    w = rand(rng, (cfg["cout"], cfg["cin"] // g) + cfg["k"])
    b = rand(rng, (cfg["cout"],))
    stride, pad, dil = _pair(cfg["stride"]), _sym_pad(cfg), cfg["dilation"]
    y = F.conv2d(x, w, b, stride, pad, dil, g)
    cols = F.unfold(x, cfg["k"], dil, pad, stride)  # (N, C*kh*kw, L), rows (c, ki, kj)
    kk = cfg["k"][0] * cfg["k"][1]
    cg, og = cfg["cin"] // g, cfg["cout"] // g
    parts = [np.einsum("ok,nkl->nol", w[i * og:(i + 1) * og].reshape(og, -1),
                       cols[:, i * cg * kk:(i + 1) * cg * kk]) for i in range(g)]
    want = np.concatenate(parts, axis=1) + b[None, :, None]
    assert_close(y.reshape(want.shape), want, F64, "conv2d vs W @ unfold")


@given(cfg=pool_configs(), dtype=dtypes, seed=seeds)
def test_max_pool2d_gradient_lives_on_argmax_positions(cfg, dtype, seed):
    rng = np.random.default_rng(seed)
    x = distinct_values(rng, (cfg["n"], cfg["c"]) + cfg["hw"], dtype)
    geo = dict(kernel_size=cfg["k"], stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"],
               ceil_mode=cfg["ceil_mode"])
    y, idx = F.max_pool2d(x, **geo, return_indices=True)
    g = (rng.random(y.shape) + 0.5).astype(dtype)  # positive: no cancellation hides a position
    gx = F.max_pool2d_backward(g, idx, x.shape)
    n, c, h, w = x.shape
    mask = np.zeros((n, c, h * w), bool)
    for i in range(n):
        for j in range(c):
            mask[i, j, idx[i, j][idx[i, j] >= 0]] = True
    mask = mask.reshape(x.shape)
    assert not gx[~mask].any(), "gradient outside the argmax positions"
    assert (gx[mask] > 0).all()
    valid = idx >= 0
    np.testing.assert_allclose(gx.sum(axis=(2, 3)), np.where(valid, g, 0).sum(axis=(2, 3)),
                               rtol=1e-5 if dtype == F32 else 1e-12)
    # y is the input value at the returned index
    flat = x.reshape(n, c, -1)
    np.testing.assert_array_equal(np.take_along_axis(flat, np.where(valid, idx, 0).reshape(n, c, -1), 2)
                                  .reshape(idx.shape)[valid], y[valid])


@given(shape=st.sampled_from([(8, 3), (4, 2, 5), (3, 4, 3, 2), (2, 1, 4, 4)]), dtype=dtypes, seed=seeds,
       offset=st.sampled_from([0.0, 5.0, -3.0]), scale=st.sampled_from([0.1, 1.0, 10.0]))
def test_batch_norm_training_output_statistics(shape, dtype, seed, offset, scale):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = (rand(rng, shape, F64) * scale + offset).astype(dtype)
    axes = (0,) + tuple(range(2, len(shape)))
    x64 = x.astype(F64)
    var = x64.var(axis=axes)
    eps = 1e-5
    tol = 1e-4 if dtype == F32 else 1e-9
    y = F.batch_norm(x, None, None, None, None, training=True, eps=eps).astype(F64)
    np.testing.assert_allclose(y.mean(axis=axes), 0, atol=tol)
    np.testing.assert_allclose(y.var(axis=axes), var / (var + eps), rtol=tol)  # -> 1 as eps -> 0
    w = rand(rng, (c,), dtype)
    b = rand(rng, (c,), dtype)
    y = F.batch_norm(x, None, None, w, b, training=True, eps=eps).astype(F64)
    np.testing.assert_allclose(y.mean(axis=axes), b, atol=tol * 10)
    np.testing.assert_allclose(y.std(axis=axes), np.abs(w.astype(F64)) * np.sqrt(var / (var + eps)),
                               rtol=tol * 10, atol=tol)


@given(cfg=conv_configs(allow_same=False), seed=seeds)
def test_conv2d_with_1x1_kernel_is_a_per_pixel_matmul(cfg, seed):
    rng = np.random.default_rng(seed)
    g = cfg["groups"]
    x = rand(rng, (cfg["n"], cfg["cin"]) + cfg["hw"])
    w = rand(rng, (cfg["cout"], cfg["cin"] // g, 1, 1))
    b = rand(rng, (cfg["cout"],))
    s = _pair(cfg["stride"])
    y = F.conv2d(x, w, b, stride=s, groups=g)
    cg, og = cfg["cin"] // g, cfg["cout"] // g
    xs = x[:, :, ::s[0], ::s[1]]
    want = np.concatenate([np.einsum("oc,nchw->nohw", w[i * og:(i + 1) * og, :, 0, 0], xs[:, i * cg:(i + 1) * cg])
                           for i in range(g)], axis=1) + b[None, :, None, None]
    assert_close(y, want, F64, "1x1 conv vs matmul")


@given(cfg=conv_configs(), seed=seeds)
def test_padding_same_keeps_height_and_width(cfg, seed):
    rng = np.random.default_rng(seed)
    x = rand(rng, (cfg["n"], cfg["cin"]) + cfg["hw"])
    w = rand(rng, (cfg["cout"], cfg["cin"] // cfg["groups"]) + cfg["k"])
    y = F.conv2d(x, w, None, 1, "same", cfg["dilation"], cfg["groups"])
    assert y.shape == (cfg["n"], cfg["cout"]) + cfg["hw"]
    # 'same' equals explicit zero padding with the odd extra at the bottom/right (torch's rule)
    pads = [(d * (k - 1) // 2, d * (k - 1) - d * (k - 1) // 2) for k, d in zip(cfg["k"], cfg["dilation"])]
    xp = np.pad(x, [(0, 0), (0, 0)] + pads)
    assert_close(y, F.conv2d(xp, w, None, 1, 0, cfg["dilation"], cfg["groups"]), F64, "'same' vs explicit padding")


@given(cfg=conv_configs(), seed=seeds, a=st.floats(-3, 3), c=st.floats(-3, 3))
def test_conv2d_is_linear_in_x(cfg, seed, a, c):
    rng = np.random.default_rng(seed)
    shape = (cfg["n"], cfg["cin"]) + cfg["hw"]
    x1, x2 = rand(rng, shape), rand(rng, shape)
    w = rand(rng, (cfg["cout"], cfg["cin"] // cfg["groups"]) + cfg["k"])
    geo = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"])
    lhs = F.conv2d(a * x1 + c * x2, w, **geo)
    rhs = a * F.conv2d(x1, w, **geo) + c * F.conv2d(x2, w, **geo)
    scale = max(1.0, float(np.abs(F.conv2d(np.abs(x1) + np.abs(x2), np.abs(w), **geo)).max()) * 3)
    np.testing.assert_allclose(lhs, rhs, atol=1e-12 * scale)


@given(k=st.tuples(st.integers(1, 3), st.integers(1, 3)), reps=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       dtype=dtypes, seed=seeds)
def test_pools_with_tiling_windows_are_block_reductions(k, reps, dtype, seed):
    """kernel == stride, no padding: each output is the max / mean of one block of the input."""
    rng = np.random.default_rng(seed)
    h, w = k[0] * reps[0], k[1] * reps[1]
    x = distinct_values(rng, (2, 3, h, w), dtype)
    blocks = x.reshape(2, 3, reps[0], k[0], reps[1], k[1])
    np.testing.assert_array_equal(F.max_pool2d(x, k), blocks.max(axis=(3, 5)))
    assert_close(F.avg_pool2d(x, k), blocks.astype(F64).mean(axis=(3, 5)), dtype, "avg_pool2d block mean",
                 tol=1e-6 if dtype == F32 else None)
    g = rand(rng, (2, 3) + reps, dtype)
    gx = F.avg_pool2d_backward(g, x.shape, k)
    want = np.repeat(np.repeat(g, k[0], axis=2), k[1], axis=3) / (k[0] * k[1])
    assert_close(gx, want, dtype, "avg_pool2d_backward block spread", tol=1e-6 if dtype == F32 else None)


@given(shape=st.sampled_from([(3, 4), (2, 3, 5)]), seed=seeds)
def test_batch_norm_eval_is_an_affine_map_per_channel(shape, seed):
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = rand(rng, shape)
    rm, rv, w, b = rand(rng, (c,)), rng.random(c) + 0.2, rand(rng, (c,)), rand(rng, (c,))
    y = F.batch_norm(x, rm, rv, w, b, training=False, eps=1e-3)
    bc = (1, c) + (1,) * (len(shape) - 2)
    want = (x - rm.reshape(bc)) / np.sqrt(rv.reshape(bc) + 1e-3) * w.reshape(bc) + b.reshape(bc)
    assert_close(y, want, F64, "batch_norm eval")
