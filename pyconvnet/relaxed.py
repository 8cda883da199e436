"""Relaxed receptive-field convolution (seed 003: Tazume, Ochi, Sakata, Mori,
"Proposal of optimization method of local receptive field using gradient descent").

A convolution is written as ``O = I (x) L (x) W`` with a receptive-field tensor
``L`` (n_in, n_out, k) that says which input position feeds kernel slot ``s`` of
output position ``j``::

    P[n, c, j, s] = sum_i x[n, c, i] L[i, j, s]            (I (x) L)
    y[n, o, j]    = sum_{c, s} w[o, c, s] P[n, c, j, s] + bias[o]   (. (x) W)

With ``L`` one-hot along the input axis this is an ordinary convolution on any
data whose neighbourhoods are a table ``index`` (n_out, k): :func:`receptive_conv`
(a generalised im2col + GEMM). Relaxing ``L = softmax(R, axis=input)`` makes the
receptive field learnable by gradient descent (:func:`relaxed_conv`, dense L);
:meth:`RelaxedConv.discretize` turns it back into an index table by argmax (the
paper's "Max" function, eq. 3). ``R`` is learned DARTS-style on the validation
loss, first-order or with the one-step unrolled weights of eq. 4
(:class:`BilevelSearch`), then ``W`` is retrained with the receptive field fixed.

Contents
--------
* functional: :func:`relaxed_conv`, :func:`relaxed_conv_backward`,
  :func:`receptive_conv`, :func:`receptive_conv_backward`, :func:`grid_index`,
  :func:`index_to_L`, :func:`soft_receptive_field`, :func:`soft_receptive_field_backward`;
* naive loop references (the test oracle): ``ref_relaxed_conv``,
  ``ref_relaxed_conv_backward``, ``ref_receptive_conv``, ``ref_receptive_conv_backward``;
* the layer :class:`RelaxedConv`;
* the bilevel search: :class:`BilevelSearch`, :func:`search`, :func:`arch_gradient`,
  :func:`arch_parameters`, :func:`weight_parameters`, :func:`discretize`;
* pictures (paper Fig. 4.1): :func:`plot_receptive_fields`, :func:`field_distance`.

Padding convention of index tables: the value ``-1`` reads zero (zero padding).
``grid_index(H, W, 3)`` is the table of a 3x3 'same' convolution, slots in (ki, kj)
order, so ``receptive_conv(x.reshape(N, C, H*W), grid_index(H, W), w.reshape(O, C, 9))``
equals ``conv2d(x, w, padding=1)`` (reshaped).
"""
from __future__ import annotations

import math
import sys
import time
import zlib
import struct

import numpy as np

from . import _core
from ._args import as_int, check_ndim, float_array

__all__ = [
    "relaxed_conv", "relaxed_conv_backward", "receptive_conv", "receptive_conv_backward",
    "grid_index", "index_to_L", "check_index", "soft_receptive_field", "soft_receptive_field_backward",
    "ref_relaxed_conv", "ref_relaxed_conv_backward", "ref_receptive_conv", "ref_receptive_conv_backward",
    "RelaxedConv",
    "arch_parameters", "weight_parameters", "relaxed_layers", "discretize", "arch_gradient",
    "BilevelSearch", "search",
    "plot_receptive_fields", "field_distance", "write_png",
]


# ============================================================================ functional
def _check_xw(x, w, k, k_from):
    x = float_array(x, "x")
    check_ndim(x, "x", 3, "(N, C_in, n_in)")
    w = float_array(w, "w", x.dtype)
    check_ndim(w, "w", 3, "(C_out, C_in, k)")
    if w.shape[1] != x.shape[1] or w.shape[2] != k:
        raise ValueError(f"w: expected shape (C_out, {x.shape[1]}, {k}) for x {x.shape} and k = {k} "
                         f"({k_from}), got {w.shape}")
    return x, w


def _check_bias(bias, o, dtype):
    if bias is None:
        return None
    bias = float_array(bias, "bias", dtype)
    if bias.shape != (o,):
        raise ValueError(f"bias: expected shape ({o},), got {bias.shape}")
    return bias


def _check_L(L, x):
    L = float_array(L, "L", x.dtype)
    check_ndim(L, "L", 3, "(n_in, n_out, k)")
    if L.shape[0] != x.shape[2]:
        raise ValueError(f"L: expected shape ({x.shape[2]}, n_out, k) (n_in = x.shape[2] of x {x.shape}), "
                         f"got {L.shape}")
    return L


def check_index(index, n_in):
    """``index`` as a C-contiguous int64 (n_out, k) table with values in [-1, n_in) (-1 = zero padding).

    Non-integer dtypes (floats, bools), a wrong rank and out-of-range values are a ValueError naming ``index``."""
    idx = np.asarray(index)
    if idx.dtype.kind not in "iu":
        raise ValueError(f"index: expected an integer array (n_out, k) of input positions (-1 = zero padding), "
                         f"got dtype {idx.dtype}")
    if idx.ndim != 2:
        raise ValueError(f"index: expected a (n_out, k) array, got shape {idx.shape}")
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < -1 or hi >= n_in:
            raise ValueError(f"index: values must lie in [-1, {n_in}) (input positions, n_in = x.shape[2]; "
                             f"-1 = zero padding), got range [{lo}, {hi}]")
    return np.ascontiguousarray(idx, dtype=np.int64)


def _check_grad_y(grad_y, x, o, n_out):
    grad_y = float_array(grad_y, "grad_y", x.dtype)
    want = (x.shape[0], o, n_out)
    if grad_y.shape != want:
        raise ValueError(f"grad_y: expected shape {want} (the output of the forward), got {grad_y.shape}")
    return grad_y


def relaxed_conv(x, L, w, bias=None, *, return_patches=False):
    """Relaxed convolution with a dense receptive-field tensor.

    x (N, C_in, n_in), L (n_in, n_out, k), w (C_out, C_in, k), bias (C_out,) ->
    y (N, C_out, n_out) with y[n,o,j] = sum_{c,s,i} w[o,c,s] x[n,c,i] L[i,j,s] + bias[o].
    One big GEMM P = (C_in*N, n_in) @ (n_in, n_out*k), then C_in small ones mixing P with w.

    return_patches=True returns (y, P) with P (C_in, N, n_out, k), P[c, n, j, s] = sum_i
    x[n, c, i] L[i, j, s] (channel-major: the kernels' own layout); hand P to
    :func:`relaxed_conv_backward` as ``patches`` and the backward skips recomputing it
    (one GEMM as large as the forward's)."""
    x = float_array(x, "x")
    check_ndim(x, "x", 3, "(N, C_in, n_in)")
    L = _check_L(L, x)
    x, w = _check_xw(x, w, L.shape[2], "L.shape[2]")
    bias = _check_bias(bias, w.shape[0], x.dtype)
    return _core.relaxed_conv_forward(x, L, w, bias, bool(return_patches))


def _check_patches(patches, x, L):
    if patches is None:
        return None
    want = (x.shape[1], x.shape[0], L.shape[1], L.shape[2])
    if not isinstance(patches, np.ndarray) or patches.dtype != x.dtype or patches.shape != want:
        got = (f"{patches.dtype} array of shape {patches.shape}" if isinstance(patches, np.ndarray)
               else type(patches).__name__)
        raise ValueError(f"patches: expected the {x.dtype} array of shape {want} that relaxed_conv returned "
                         f"with return_patches=True, got {got}")
    return patches


def relaxed_conv_backward(grad_y, x, L, w, *, patches=None, need_grad_x=True, need_grad_L=True):
    """Gradients of :func:`relaxed_conv`: (grad_x, grad_L, grad_w, grad_bias).

    patches: the P (C_in, N, n_out, k) from ``relaxed_conv(..., return_patches=True)`` on the same
    x and L; without it P is recomputed. need_grad_x=False / need_grad_L=False skip those
    (returned as None): each costs one (N*C_in) x n_in x (n_out*k) GEMM."""
    x = float_array(x, "x")
    check_ndim(x, "x", 3, "(N, C_in, n_in)")
    L = _check_L(L, x)
    x, w = _check_xw(x, w, L.shape[2], "L.shape[2]")
    grad_y = _check_grad_y(grad_y, x, w.shape[0], L.shape[1])
    patches = _check_patches(patches, x, L)
    return _core.relaxed_conv_backward(grad_y, x, L, w, patches, bool(need_grad_x), bool(need_grad_L))


def receptive_conv(x, index, w, bias=None):
    """Convolution over an arbitrary receptive-field table (a generalised im2col + GEMM).

    x (N, C_in, n_in), index (n_out, k) integers in [-1, n_in), w (C_out, C_in, k) ->
    y (N, C_out, n_out) with y[n,o,j] = sum_{c,s} w[o,c,s] x[n,c,index[j,s]] + bias[o];
    index -1 reads 0 (zero padding)."""
    x = float_array(x, "x")
    check_ndim(x, "x", 3, "(N, C_in, n_in)")
    index = check_index(index, x.shape[2])
    x, w = _check_xw(x, w, index.shape[1], "index.shape[1]")
    bias = _check_bias(bias, w.shape[0], x.dtype)
    return _core.receptive_conv_forward(x, index, w, bias)


def receptive_conv_backward(grad_y, x, index, w, *, need_grad_x=True):
    """Gradients of :func:`receptive_conv`: (grad_x, grad_w, grad_bias); grad_x is a scatter-add
    (None with need_grad_x=False). The index table has no gradient."""
    x = float_array(x, "x")
    check_ndim(x, "x", 3, "(N, C_in, n_in)")
    index = check_index(index, x.shape[2])
    x, w = _check_xw(x, w, index.shape[1], "index.shape[1]")
    grad_y = _check_grad_y(grad_y, x, w.shape[0], index.shape[0])
    return _core.receptive_conv_backward(grad_y, x, index, w, bool(need_grad_x))


def grid_index(height, width, kernel_size=3, dilation=1, padding="zero"):
    """Index table (H*W, kh*kw) of a stride-1 'same' convolution on an H x W image.

    Row j = r*W + c is output pixel (r, c); slot s = ki*kw + kj reads pixel
    (r + (ki - kh//2)*d, c + (kj - kw//2)*d), the order of ``conv2d``'s weight
    (O, C, kh, kw) flattened to (O, C, kh*kw). Outside the image: ``padding='zero'``
    gives -1 (reads 0, as conv2d's zero padding), ``'clamp'`` the nearest pixel inside."""
    h, w = as_int(height, "height"), as_int(width, "width")
    kh, kw = (kernel_size, kernel_size) if np.ndim(kernel_size) == 0 else tuple(kernel_size)
    kh, kw, d = as_int(kh, "kernel_size"), as_int(kw, "kernel_size"), as_int(dilation, "dilation")
    if h < 1 or w < 1 or kh < 1 or kw < 1 or d < 1:
        raise ValueError(f"grid_index: sizes must be positive, got height={h}, width={w}, "
                         f"kernel_size={(kh, kw)}, dilation={d}")
    if padding not in ("zero", "clamp"):
        raise ValueError(f"padding: expected 'zero' or 'clamp', got {padding!r}")
    r = np.arange(h)[:, None, None, None] + (np.arange(kh)[None, None, :, None] - kh // 2) * d
    c = np.arange(w)[None, :, None, None] + (np.arange(kw)[None, None, None, :] - kw // 2) * d
    r, c = np.broadcast_arrays(r, c)
    if padding == "clamp":
        idx = np.clip(r, 0, h - 1) * w + np.clip(c, 0, w - 1)
    else:
        idx = np.where((r >= 0) & (r < h) & (c >= 0) & (c < w), r * w + c, -1)
    return np.ascontiguousarray(idx.reshape(h * w, kh * kw), dtype=np.int64)


def index_to_L(index, n_in, dtype=np.float64):
    """The dense one-hot L (n_in, n_out, k) of an index table (an all-zero column for -1)."""
    idx = check_index(index, as_int(n_in, "n_in"))
    n_out, k = idx.shape
    L = np.zeros((n_in, n_out, k), dtype=dtype)
    j, s = np.nonzero(idx >= 0)
    L[idx[j, s], j, s] = 1
    return L


def soft_receptive_field(R, centre_map=None):
    """L_c = softmax(R, axis=0) (the paper's continuous receptive field, eq. 2); with
    ``centre_map`` (n_out,) slot 0 is fixed to the one-hot L[centre_map[j], j, 0] = 1."""
    R = float_array(R, "R")
    check_ndim(R, "R", 3, "(n_in, n_out, k)")
    L = R - R.max(axis=0, keepdims=True)
    np.exp(L, out=L)
    L /= L.sum(axis=0, keepdims=True)
    if centre_map is not None and R.shape[2] > 0:
        L[:, :, 0] = 0
        L[centre_map, np.arange(R.shape[1]), 0] = 1
    return L


def soft_receptive_field_backward(grad_L, L, centre=False):
    """grad_R of :func:`soft_receptive_field` given its output L: L * (grad_L - sum_i L grad_L);
    zero for the fixed slot 0 when ``centre``."""
    g = grad_L - np.sum(L * grad_L, axis=0, keepdims=True)
    g *= L
    if centre and L.shape[2] > 0:
        g[:, :, 0] = 0
    return g


# ============================================================================ naive references
# Plain loops over output positions (over input positions for the scatter-shaped grad_x)
# with a small NumPy reduction, in float64, cast back to the input dtype. Written from the
# formulas only: independent of the C++ kernels and of the functions above.
def _ref_dtype(*arrays):
    return np.result_type(*[np.asarray(a).dtype for a in arrays if a is not None])


def ref_relaxed_conv(x, L, w, bias=None):
    """Naive y[n,o,j] = sum_{c,s,i} w[o,c,s] x[n,c,i] L[i,j,s] + bias[o]."""
    dt = _ref_dtype(x, L, w)
    x, L, w = (np.asarray(a, np.float64) for a in (x, L, w))
    N, C, n_in = x.shape
    _, n_out, k = L.shape
    O = w.shape[0]
    y = np.zeros((N, O, n_out))
    for n in range(N):
        for o in range(O):
            for j in range(n_out):
                # (C, k, 1) * (C, 1, n_in) * (1, k, n_in)
                y[n, o, j] = np.sum(w[o][:, :, None] * x[n][:, None, :] * L[:, j, :].T[None])
                if bias is not None:
                    y[n, o, j] += float(np.asarray(bias, np.float64)[o])
    return y.astype(dt)


def ref_relaxed_conv_backward(grad_y, x, L, w):
    """Naive (grad_x, grad_L, grad_w, grad_bias) of ref_relaxed_conv, each from its own sum."""
    dt = _ref_dtype(x, L, w)
    g, x, L, w = (np.asarray(a, np.float64) for a in (grad_y, x, L, w))
    N, C, n_in = x.shape
    _, n_out, k = L.shape
    O = w.shape[0]
    gx = np.zeros(x.shape)
    for n in range(N):
        for c in range(C):
            for i in range(n_in):  # sum_{o,j,s} g[n,o,j] w[o,c,s] L[i,j,s]
                gx[n, c, i] = np.sum(g[n][:, :, None] * w[:, c, :][:, None, :] * L[i][None])
    gL = np.zeros(L.shape)
    for i in range(n_in):
        for j in range(n_out):
            for s in range(k):  # sum_{n,o,c} g[n,o,j] w[o,c,s] x[n,c,i]
                gL[i, j, s] = np.sum(g[:, :, j][:, :, None] * w[:, :, s][None] * x[:, :, i][:, None, :])
    gw = np.zeros(w.shape)
    for o in range(O):
        for c in range(C):
            for s in range(k):  # sum_{n,j,i} g[n,o,j] x[n,c,i] L[i,j,s]
                gw[o, c, s] = np.sum(g[:, o, :][:, :, None] * x[:, c, :][:, None, :] * L[:, :, s].T[None])
    gb = np.array([np.sum(g[:, o, :]) for o in range(O)])
    return gx.astype(dt), gL.astype(dt), gw.astype(dt), gb.astype(dt)


def ref_receptive_conv(x, index, w, bias=None):
    """Naive y[n,o,j] = sum_{c,s} w[o,c,s] x[n,c,index[j,s]] (0 where index is -1) + bias[o]."""
    dt = _ref_dtype(x, w)
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    index = np.asarray(index)
    N, C, _ = x.shape
    n_out, k = index.shape
    O = w.shape[0]
    y = np.zeros((N, O, n_out))
    for n in range(N):
        for o in range(O):
            for j in range(n_out):
                total = 0.0
                for s in range(k):
                    i = int(index[j, s])
                    if i >= 0:
                        total += float(np.sum(w[o, :, s] * x[n, :, i]))
                if bias is not None:
                    total += float(np.asarray(bias, np.float64)[o])
                y[n, o, j] = total
    return y.astype(dt)


def ref_receptive_conv_backward(grad_y, x, index, w):
    """Naive (grad_x, grad_w, grad_bias) of ref_receptive_conv; grad_x loops over input positions."""
    dt = _ref_dtype(x, w)
    g, x, w = (np.asarray(a, np.float64) for a in (grad_y, x, w))
    index = np.asarray(index)
    N, C, n_in = x.shape
    n_out, k = index.shape
    O = w.shape[0]
    gx = np.zeros(x.shape)
    for i in range(n_in):
        js, ss = np.nonzero(index == i)  # every (output, slot) that reads input i
        for n in range(N):
            for c in range(C):
                gx[n, c, i] = np.sum(g[n][:, js] * w[:, c, ss])
    gw = np.zeros(w.shape)
    for o in range(O):
        for c in range(C):
            for s in range(k):
                total = 0.0
                for j in range(n_out):
                    i = int(index[j, s])
                    if i >= 0:
                        total += float(np.sum(g[:, o, j] * x[:, c, i]))
                gw[o, c, s] = total
    gb = np.array([np.sum(g[:, o, :]) for o in range(O)])
    return gx.astype(dt), gw.astype(dt), gb.astype(dt)


# ============================================================================ layer
# Imported here, after the functional part: pyconvnet.functional re-exports the functions
# above, and importing pyconvnet.layers imports pyconvnet.functional, so whichever of
# functional / layers / relaxed is imported first, the names functional needs exist already.
from .layers.base import ParamLayer  # noqa: E402


def _positive(v, name, minimum=1):
    v = as_int(v, name)
    if v < minimum:
        raise ValueError(f"{name}: expected an int >= {minimum}, got {v}")
    return v


def _neighbour_offsets(count):
    """``count`` (dr, dc) offsets around a centre, nearest rings first, row-major in a ring,
    the centre itself excluded: the first 8 are a 3x3 neighbourhood."""
    out, radius = [], 1
    while len(out) < count:
        ring = [(dr, dc) for dr in range(-radius, radius + 1) for dc in range(-radius, radius + 1)
                if max(abs(dr), abs(dc)) == radius]
        out.extend(ring)
        radius += 1
    return out[:count]


class RelaxedConv(ParamLayer):
    """Relaxed receptive-field convolution layer (seed 003, Fig. 3.1).

    x (N, C_in, n_in) -- or (N, C_in, H, W) with H*W = n_in, flattened -- ->
    y (N, C_out, n_out). Parameters: ``R`` (n_in, n_out, k), the receptive-field
    source tensor; ``weight`` (C_out, C_in, k); ``bias`` (C_out,).

    Relaxed mode (default): ``L_c = softmax(R, axis=0)`` and y = relaxed_conv(x, L_c, W).
    With ``centre=True`` slot 0 is fixed to the identity (output j reads input j, so
    n_in must equal n_out) or to ``centre_map`` (n_out,) and gets no gradient (paper §4.1).
    ``discretize()`` switches to ``L_d`` = one-hot argmax of R over the input axis (eq. 3),
    kept as the int64 buffer ``index`` (n_out, k), and the layer runs through
    receptive_conv; R then gets zero gradient. ``discrete=True`` builds the layer
    discretised (with ``load_state_dict`` this restores a saved discrete layer).

    ``R`` init: N(0, r_std^2) (near-uniform L_c, as DARTS's alphas). ``init_grid=(H, W)``
    (needs n_in = n_out = H*W) adds ``grid_logit`` (default: the logit giving 0.9 of
    the softmax mass) at the image-grid neighbours of each output pixel: slots in the
    3x3 neighbourhood order (then 5x5 ring...), border neighbours clamped into the image.
    Attributes the bilevel search sets (not part of the config): ``arch_grad`` -- True:
    grad R; False: skip it (one GEMM less), grad R = 0; ``"L"``: leave the raw gradient
    with respect to L_c in grads['R'] (the softmax Jacobian not applied, see
    :func:`soft_receptive_field_backward`); ``weight_grad=False`` skips grad weight/bias
    (left 0). ``hold_L()`` (a context manager) reuses one L_c for every forward inside it
    (R must not change there). A training forward keeps the patches P (C_in, N, n_out, k)
    for the backward's grad_weight when they take at most ``patch_cache_bytes`` (class
    attribute, 256 MiB); otherwise the backward recomputes them (one GEMM as large as the
    forward's)."""

    patch_cache_bytes = 256 * 2**20

    def __init__(self, in_channels, out_channels, n_in, n_out, k, centre=True, centre_map=None, init_grid=None,
                 bias=True, discrete=False, r_std=1e-3, grid_logit=None, *, init="kaiming_normal",
                 bias_init=None, rng=None, seed=None, dtype=np.float32):
        super().__init__(dtype, init, bias_init, rng, seed)
        self.in_channels = _positive(in_channels, "in_channels")
        self.out_channels = _positive(out_channels, "out_channels")
        self.n_in = _positive(n_in, "n_in")
        self.n_out = _positive(n_out, "n_out")
        self.k = _positive(k, "k")
        if not isinstance(centre, (bool, np.bool_)):
            raise TypeError(f"centre: expected a bool, got {centre!r}")
        if not isinstance(bias, (bool, np.bool_)) or not isinstance(discrete, (bool, np.bool_)):
            raise TypeError(f"bias/discrete: expected bools, got bias={bias!r}, discrete={discrete!r}")
        self.centre, self.bias = bool(centre), bool(bias)
        self.r_std = float(r_std)
        if not (self.r_std >= 0 and math.isfinite(self.r_std)):
            raise ValueError(f"r_std: expected a finite value >= 0, got {r_std}")
        self.centre_map = None
        if centre_map is not None:
            if not self.centre:
                raise ValueError("centre_map: only meaningful with centre=True")
            cm = np.asarray(centre_map)
            if cm.dtype.kind not in "iu" or cm.shape != (self.n_out,):
                raise ValueError(f"centre_map: expected ({self.n_out},) integers, got {cm.dtype} {cm.shape}")
            if cm.size and (cm.min() < 0 or cm.max() >= self.n_in):
                raise ValueError(f"centre_map: values must lie in [0, {self.n_in})")
            self.centre_map = cm.astype(np.int64)
        elif self.centre:
            if self.n_in != self.n_out:
                raise ValueError(f"centre: the identity centre needs n_in == n_out (got {self.n_in}, {self.n_out}); "
                                 f"give centre_map or centre=False")
        self.init_grid = None
        if init_grid is not None:
            gh, gw = (as_int(v, "init_grid") for v in init_grid)
            if gh * gw != self.n_in or self.n_in != self.n_out:
                raise ValueError(f"init_grid: needs n_in == n_out == H*W, got init_grid={init_grid!r}, "
                                 f"n_in={self.n_in}, n_out={self.n_out}")
            self.init_grid = (gh, gw)
        self.grid_logit = None if grid_logit is None else float(grid_logit)
        R = self._init_R()
        self._make((self.out_channels, self.in_channels, self.k), self.out_channels if self.bias else 0,
                   self.in_channels * self.k, self.out_channels * self.k)
        # params in the documented order: R, weight, bias
        params = {"R": R, **self._params}
        self._params.clear()
        for name, value in params.items():
            self._add_param(name, value)
        self._buffers["index"] = self._argmax_index()
        self.discrete = bool(discrete)
        self.arch_grad = True
        self.weight_grad = True
        self._hold, self._held_L = False, None

    # ------------------------------------------------------------ construction helpers
    def _centres(self):
        return self.centre_map if self.centre_map is not None else np.arange(self.n_out)

    def _init_R(self):
        R = self._rng.standard_normal((self.n_in, self.n_out, self.k)) * self.r_std
        if self.init_grid is not None:
            h, w = self.init_grid
            logit = self.grid_logit
            if logit is None:  # softmax mass 0.9 on one of n_in entries
                logit = math.log(0.9 * max(self.n_in - 1, 1) / 0.1)
            first = 1 if self.centre else 0
            offsets = ([] if self.centre else [(0, 0)]) + _neighbour_offsets(self.k)
            rows, cols = np.divmod(np.arange(self.n_out), w)
            for s in range(first, self.k):
                dr, dc = offsets[s - first] if self.centre else offsets[s]
                src = np.clip(rows + dr, 0, h - 1) * w + np.clip(cols + dc, 0, w - 1)
                R[src, np.arange(self.n_out), s] += logit
        return np.ascontiguousarray(R, dtype=self.dtype)

    def _args(self):
        return dict(in_channels=self.in_channels, out_channels=self.out_channels, n_in=self.n_in, n_out=self.n_out,
                    k=self.k, centre=self.centre,
                    centre_map=None if self.centre_map is None else self.centre_map.tolist(),
                    init_grid=self.init_grid, bias=self.bias, discrete=self.discrete, r_std=self.r_std,
                    grid_logit=self.grid_logit, **self._init_args())

    def __repr__(self):
        return (f"RelaxedConv({self.in_channels}, {self.out_channels}, n_in={self.n_in}, n_out={self.n_out}, "
                f"k={self.k}, centre={self.centre}, discrete={self.discrete})")

    # ------------------------------------------------------------ receptive fields
    def soft_L(self):
        """The continuous receptive field L_c = softmax(R, axis=0) (centre slot fixed)."""
        if self._hold and self._held_L is not None:
            return self._held_L
        L = soft_receptive_field(self._params["R"], self._centres() if self.centre else None)
        if self._hold:
            self._held_L = L
        return L

    def hold_L(self):
        """Context manager: inside it, forward computes softmax(R) once and reuses it."""
        layer = self

        class _Hold:
            def __enter__(self):
                layer._hold, layer._held_L = True, None
                return layer

            def __exit__(self, *exc):
                layer._hold, layer._held_L = False, None
                return False

        return _Hold()

    def _argmax_index(self):
        idx = np.argmax(self._params["R"], axis=0).astype(np.int64)
        if self.centre:
            idx[:, 0] = self._centres()
        return np.ascontiguousarray(idx)

    @property
    def buffers(self):
        """``index``: the discrete table; in relaxed mode refreshed to argmax(R) on every access, so a
        state_dict saved from a relaxed layer loads into a discrete one as its discretisation."""
        if not self.discrete:
            np.copyto(self._buffers["index"], self._argmax_index())
        return super().buffers

    def receptive_index(self):
        """The discrete table (n_out, k): the buffer in discrete mode, else argmax of the current R."""
        return self._buffers["index"].copy() if self.discrete else self._argmax_index()

    def discretize(self):
        """L_d = one-hot argmax of R (eq. 3): stores the table in buffers['index'] and runs discretely."""
        np.copyto(self._buffers["index"], self._argmax_index())
        self.discrete = True
        self._cache = None
        return self

    def relax(self):
        """Back to the continuous L_c = softmax(R)."""
        self.discrete = False
        self._cache = None
        return self

    # ------------------------------------------------------------ forward / backward
    def _flat_input(self, x):
        x = self._input(x)
        if x.ndim == 4:
            x3 = x.reshape(x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        elif x.ndim == 3:
            x3 = x
        else:
            raise ValueError(f"x: expected (N, C_in, n_in) or (N, C_in, H, W), got shape {x.shape}")
        if x3.shape[1:] != (self.in_channels, self.n_in):
            raise ValueError(f"x: expected (N, {self.in_channels}, {self.n_in}) (or H*W = {self.n_in}), "
                             f"got shape {x.shape}")
        return x, x3

    def forward(self, x, training=False):
        x, x3 = self._flat_input(x)
        w, b = self._params["weight"], self._params.get("bias")
        if self.discrete:
            idx = self._buffers["index"]
            self._cache = (x.shape, x3, idx, None, None)
            return receptive_conv(x3, idx, w, b)
        L = self.soft_L()
        P = None
        if training and self.weight_grad and x3.shape[0] * x3.shape[1] * L[0].size * x3.itemsize \
                <= self.patch_cache_bytes:
            y, P = relaxed_conv(x3, L, w, b, return_patches=True)
        else:
            y = relaxed_conv(x3, L, w, b)
        self._cache = (x.shape, x3, None, L, P)
        return y

    def backward(self, grad_y):
        shape, x3, idx, L, P = self._saved()
        w = self._params["weight"]
        if idx is not None:
            gx, gw, gb = receptive_conv_backward(grad_y, x3, idx, w, need_grad_x=self.need_input_grad)
            self._grads["R"].fill(0)
        else:
            mode = self.arch_grad
            if mode not in (True, False, "L"):
                raise ValueError(f"arch_grad: expected True, False or 'L', got {mode!r}")
            gx, gL, gw, gb = _core.relaxed_conv_backward(
                _check_grad_y(grad_y, x3, w.shape[0], self.n_out), x3, L, w, patches=P,
                need_input=bool(self.need_input_grad), need_L=mode is not False,
                need_weight=bool(self.weight_grad), need_bias=bool(self.weight_grad))
            if gL is None:
                self._grads["R"].fill(0)
            elif mode == "L":
                if self.centre:
                    gL[:, :, 0] = 0
                self._set_grad("R", gL)
            else:
                self._set_grad("R", soft_receptive_field_backward(gL, L, self.centre))
        for name, g in (("weight", gw), ("bias", gb if self.bias else None)):
            if name in self._grads:
                if g is None:
                    self._grads[name].fill(0)
                else:
                    self._set_grad(name, g)
        return None if gx is None else gx.reshape(shape)


# ============================================================================ bilevel search
def _is_arch(name):
    return name == "R" or name.endswith(".R")


def arch_parameters(model):
    """(name, param, grad) triples of the receptive-field sources R (for the R optimizer)."""
    return [t for t in model.parameters() if _is_arch(t[0])]


def weight_parameters(model):
    """(name, param, grad) triples of everything else (for the W optimizer)."""
    return [t for t in model.parameters() if not _is_arch(t[0])]


def relaxed_layers(model):
    """Every RelaxedConv inside ``model`` (depth first)."""
    out, stack = [], [model]
    while stack:
        layer = stack.pop()
        if isinstance(layer, RelaxedConv):
            out.append(layer)
        stack.extend(child for _, child in reversed(list(layer._children())))
    return out


def discretize(model):
    """Discretises every RelaxedConv of ``model`` (argmax receptive fields); returns the model."""
    for layer in relaxed_layers(model):
        layer.discretize()
    return model


def _set_arch_grad(model, mode):
    for layer in relaxed_layers(model):
        layer.arch_grad = mode if mode == "L" else bool(mode)


def _forward_backward(model, loss, x, y):
    value = float(loss.forward(model.forward(x, training=True), y))
    if not math.isfinite(value):
        raise FloatingPointError(f"bilevel search diverged: loss is {value}")
    model.backward(loss.backward())
    return value


def arch_gradient(model, loss, train_batch, val_batch, order=2, xi=0.01, eps=0.01):
    """Gradient of the validation loss with respect to every R, left in the models' R grads.

    order=1: grad_R L_val(W, R) (first-order DARTS).
    order=2: the paper's eq. 4, grad_R L_val(W', R) with W' = W - xi grad_W L_train(W, R),
    = grad_R L_val(W', R) - xi * H grad_W' L_val(W', R), where the mixed second derivative
    times the vector is DARTS's central difference
    (grad_R L_train(W+, R) - grad_R L_train(W-, R)) / (2 e),  W+- = W +- e v,  e = eps / |v|.
    Everything is linear in grad L_c, so the three terms are combined at the L_c level and the
    softmax Jacobian is applied once; softmax(R) itself is computed once (R is fixed here).
    The weights are restored exactly; their grads are left undefined. Returns the validation
    loss (at W' for order 2)."""
    if order not in (1, 2):
        raise ValueError(f"order: expected 1 or 2, got {order!r}")
    layers = relaxed_layers(model)
    weights = weight_parameters(model)
    if not layers:
        raise ValueError("model: no RelaxedConv layer (nothing to search)")
    xt, yt = train_batch
    xv, yv = val_batch
    if order == 1:
        _set_arch_grad(model, True)
        for layer in layers:  # only grad R is used: skip the relaxed layers' weight gradients (one GEMM)
            layer.weight_grad = False
        try:
            return _forward_backward(model, loss, xv, yv)
        finally:
            for layer in layers:
                layer.weight_grad = True
    saved = [p.copy() for _, p, _ in weights]
    holds = [layer.hold_L() for layer in layers]
    for h in holds:
        h.__enter__()
    try:
        # 1. virtual step W' = W - xi grad_W L_train(W, R)
        _set_arch_grad(model, False)
        _forward_backward(model, loss, xt, yt)
        for _, p, g in weights:
            p -= p.dtype.type(xi) * g
        # 2. grad_W' and grad_L of L_val at (W', R)
        _set_arch_grad(model, "L")
        val_loss = _forward_backward(model, loss, xv, yv)
        v = [g.astype(np.float64) for _, _, g in weights]
        g_L = [layer._grads["R"].astype(np.float64) for layer in layers]
        norm = math.sqrt(sum(float(np.vdot(a, a)) for a in v))
        if norm > 0 and xi != 0:
            e = eps / norm
            for layer in layers:
                layer.weight_grad = False
            try:
                for sign in (1.0, -1.0):  # 3. grad_L L_train at W +- e v
                    for (_, p, _), p0, vi in zip(weights, saved, v):
                        np.copyto(p, p0 + sign * e * vi, casting="same_kind")
                    _forward_backward(model, loss, xt, yt)
                    for gl, layer in zip(g_L, layers):
                        gl -= (sign * xi / (2 * e)) * layer._grads["R"]
            finally:
                for layer in layers:
                    layer.weight_grad = True
        for gl, layer in zip(g_L, layers):
            L = layer.soft_L()
            np.copyto(layer._grads["R"], soft_receptive_field_backward(gl.astype(L.dtype), L, layer.centre),
                      casting="same_kind")
    finally:
        _set_arch_grad(model, True)
        for h in holds:
            h.__exit__(None, None, None)
        for (_, p, _), p0 in zip(weights, saved):
            np.copyto(p, p0)
    return val_loss


class BilevelSearch:
    """Alternating DARTS-style optimisation (paper Fig. 3.1): per step an R update on a
    validation batch (``order`` 1 or 2, see :func:`arch_gradient`) then a W update on a
    training batch. ``w_optimizer`` must hold only the weights (:func:`weight_parameters`),
    ``r_optimizer`` only the R tensors (:func:`arch_parameters`). ``xi`` (gamma of eq. 4)
    defaults to the W optimizer's learning rate."""

    def __init__(self, model, w_optimizer, r_optimizer, loss=None, order=1, xi=None, eps=0.01):
        from .losses import SoftmaxCrossEntropy

        if order not in (1, 2):
            raise ValueError(f"order: expected 1 or 2, got {order!r}")
        self.model, self.w_opt, self.r_opt = model, w_optimizer, r_optimizer
        self.loss = loss if loss is not None else SoftmaxCrossEntropy()
        self.order = order
        self.xi = float(xi) if xi is not None else float(getattr(w_optimizer, "lr", 0.01))
        self.eps = float(eps)
        arch_ids = {id(p) for _, p, _ in arch_parameters(model)}
        for name, p, _ in getattr(w_optimizer, "_entries", ()):
            if id(p) in arch_ids:
                raise ValueError(f"w_optimizer: holds the receptive-field parameter {name!r}; build it from "
                                 f"weight_parameters(model)")

    def step(self, train_batch, val_batch):
        """One R update then one W update; returns (train_loss, val_loss)."""
        model = self.model
        val_loss = arch_gradient(model, self.loss, train_batch, val_batch, self.order, self.xi, self.eps)
        self.r_opt.step()
        _set_arch_grad(model, False)
        try:
            train_loss = _forward_backward(model, self.loss, *train_batch)
        finally:
            _set_arch_grad(model, True)
        self.w_opt.step()
        return train_loss, val_loss


def search(model, train, val, epochs, batch_size, w_optimizer, r_optimizer, *, loss=None, order=1, xi=None,
           eps=0.01, transform=None, seed=0, verbose=True, max_steps=None, on_epoch_end=None):
    """Runs :class:`BilevelSearch` for ``epochs`` passes over ``train`` (validation batches drawn
    alongside from ``val``, cycling). train/val: (images, labels). Returns a history dict with
    per-epoch mean train_loss, val_loss and seconds."""
    from .training import to_float

    transform = transform or to_float
    xt, yt = train
    xv, yv = val
    trainer = BilevelSearch(model, w_optimizer, r_optimizer, loss, order, xi, eps)
    saved_need = getattr(model, "need_input_grad", None)
    if saved_need is not None:
        model.need_input_grad = False
    hist = {"epoch": [], "train_loss": [], "val_loss": [], "seconds": []}
    try:
        for epoch in range(int(epochs)):
            rng = np.random.default_rng([int(seed), epoch])
            order_t, order_v = rng.permutation(len(xt)), rng.permutation(len(xv))
            steps = len(xt) // batch_size
            if max_steps is not None:
                steps = min(steps, int(max_steps))
            t0 = time.perf_counter()
            tl = vl = 0.0
            for s in range(steps):
                it = order_t[s * batch_size:(s + 1) * batch_size]
                iv = np.take(order_v, np.arange(s * batch_size, (s + 1) * batch_size), mode="wrap")
                a, b = trainer.step((transform(xt[it]), yt[it]), (transform(xv[iv]), yv[iv]))
                tl += a
                vl += b
            sec = time.perf_counter() - t0
            hist["epoch"].append(epoch + 1)
            hist["train_loss"].append(tl / max(steps, 1))
            hist["val_loss"].append(vl / max(steps, 1))
            hist["seconds"].append(sec)
            if verbose:
                print(f"search epoch {epoch + 1}/{epochs} (order {order}): train_loss {tl / max(steps, 1):.4f} "
                      f"val_loss {vl / max(steps, 1):.4f} | {sec:.1f} s, {steps} steps", file=sys.stderr)
            if on_epoch_end is not None:
                on_epoch_end(epoch, hist)
    finally:
        if saved_need is not None:
            model.need_input_grad = saved_need
    return hist


# ============================================================================ pictures
def write_png(path, rgb):
    """Writes an (H, W, 3) uint8 array as a PNG (zlib only: no matplotlib needed)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[r].tobytes() for r in range(h))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def _field_pixels(index, j, perm):
    """Original-image pixel of the centre (slot 0) and of the other slots of output j."""
    row = np.asarray(index)[j]
    to_orig = (lambda i: int(perm[i])) if perm is not None else int
    return to_orig(row[0]), [to_orig(i) for i in row[1:] if i >= 0]


def _output_for_pixel(pixel, perm):
    """Output position whose centre is original pixel ``pixel`` (identity centre)."""
    if perm is None:
        return int(pixel)
    return int(np.argsort(perm)[pixel])


def field_distance(index, shape, perm=None):
    """Mean Euclidean distance, in original image pixels, between each output's centre (slot 0)
    and its other slots' pixels (for data permuted with ``perm``: position j holds pixel perm[j]).
    A 3x3 grid gives ~1.2; uniformly random fields about 14.6 on 28x28 (7.3 on 14x14)."""
    index = np.asarray(index)
    h, w = shape
    perm = None if perm is None else np.asarray(perm)
    orig = (lambda a: perm[a]) if perm is not None else (lambda a: a)
    centre = orig(index[:, 0])
    others = index[:, 1:]
    valid = others >= 0
    o = orig(np.where(valid, others, 0))
    cr, cc = np.divmod(centre, w)
    orr, oc = np.divmod(o, w)
    d = np.hypot(orr - cr[:, None], oc - cc[:, None])
    return float(d[valid].mean()) if valid.any() else 0.0


def plot_receptive_fields(index, shape, path, centres=((15, 15), (13, 25), (25, 25)), perm=None, title=None,
                          scale=8):
    """Paper Fig. 4.1: for each centre pixel (row, col), 1-based as in the paper, the image grid
    with the centre in red and the pixels of the other slots in white. ``index`` (n_out, k) with
    slot 0 the centre; ``perm`` maps positions of permuted data back to original pixels.
    Uses matplotlib when present, else writes the panels side by side with :func:`write_png`."""
    h, w = shape
    panels = []
    for (r, c) in centres:
        pixel = (r - 1) * w + (c - 1)
        j = _output_for_pixel(pixel, None if perm is None else np.asarray(perm))
        centre, others = _field_pixels(index, j, None if perm is None else np.asarray(perm))
        img = np.zeros((h, w, 3), np.uint8)
        img[..., :] = 40
        for p in others:
            img[p // w, p % w] = 255
        img[centre // w, centre % w] = (230, 30, 30)
        panels.append(img)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        gap = np.full((h * scale, scale, 3), 128, np.uint8)
        big = [np.kron(p, np.ones((scale, scale, 1), np.uint8)) for p in panels]
        row = np.concatenate([x for b in big for x in (b, gap)][:-1], axis=1)
        write_png(path, row)
        return path
    fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.3))
    axes = np.atleast_1d(axes)
    for ax, img, (r, c) in zip(axes, panels, centres):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(f"centre ({r}, {c})")
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
