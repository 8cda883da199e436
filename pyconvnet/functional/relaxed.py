"""Relaxed receptive-field convolution (Tazume, Ochi, Sakata, Mori, "Proposal of
optimization method of local receptive field using gradient descent", Univ. of
Tokyo): the functional forms.

A convolution is written as ``O = I (x) L (x) W`` with a receptive-field tensor
``L`` (n_in, n_out, k) that says which input position feeds kernel slot ``s`` of
output position ``j``::

    P[n, c, j, s] = sum_i x[n, c, i] L[i, j, s]                      (I (x) L)
    y[n, o, j]    = sum_{c, s} w[o, c, s] P[n, c, j, s] + bias[o]    (. (x) W)

With ``L`` one-hot along the input axis this is an ordinary convolution on any
data whose neighbourhoods are a table ``index`` (n_out, k): :func:`receptive_conv`
(a generalised im2col + GEMM). Relaxing ``L = softmax(R, axis=input)`` (the paper's
eq. 2, :func:`soft_receptive_field`) makes the receptive field learnable by gradient
descent (:func:`relaxed_conv`, dense L). The layer is
:class:`pyconvnet.layers.RelaxedConv`, the bilevel search :mod:`pyconvnet.search`.

Padding convention of index tables: the value ``-1`` reads zero (zero padding).
``grid_index(H, W, 3)`` is the table of a 3x3 'same' convolution, slots in (ki, kj)
order, so ``receptive_conv(x.reshape(N, C, H*W), grid_index(H, W), w.reshape(O, C, 9))``
equals ``conv2d(x, w, padding=1)`` (reshaped).
"""
from __future__ import annotations

import numpy as np

from .. import _core
from .._args import as_int, check_ndim, float_array

__all__ = [
    "relaxed_conv", "relaxed_conv_backward", "receptive_conv", "receptive_conv_backward",
    "grid_index", "index_to_L", "check_index", "soft_receptive_field", "soft_receptive_field_backward",
]


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


def _check_grad_out(grad_out, x, o, n_out):
    grad_out = float_array(grad_out, "grad_out", x.dtype)
    want = (x.shape[0], o, n_out)
    if grad_out.shape != want:
        raise ValueError(f"grad_out: expected shape {want} (the output of the forward), got {grad_out.shape}")
    return grad_out


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


def relaxed_conv_backward(grad_out, x, L, w, *, patches=None, need_grad_x=True, need_grad_L=True,
                          need_grad_weight=True):
    """Gradients of :func:`relaxed_conv`: (grad_x, grad_L, grad_w, grad_bias).

    patches: the P (C_in, N, n_out, k) from ``relaxed_conv(..., return_patches=True)`` on the same
    x and L; without it P is recomputed. need_grad_x=False / need_grad_L=False skip those
    (returned as None): each costs one (N*C_in) x n_in x (n_out*k) GEMM.
    need_grad_weight=False skips grad_w and grad_bias (None): the bilevel search's
    receptive-field step needs only grad_L."""
    x = float_array(x, "x")
    check_ndim(x, "x", 3, "(N, C_in, n_in)")
    L = _check_L(L, x)
    x, w = _check_xw(x, w, L.shape[2], "L.shape[2]")
    grad_out = _check_grad_out(grad_out, x, w.shape[0], L.shape[1])
    patches = _check_patches(patches, x, L)
    return _core.relaxed_conv_backward(grad_out, x, L, w, patches, bool(need_grad_x), bool(need_grad_L),
                                       bool(need_grad_weight), bool(need_grad_weight))


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


def receptive_conv_backward(grad_out, x, index, w, *, need_grad_x=True):
    """Gradients of :func:`receptive_conv`: (grad_x, grad_w, grad_bias); grad_x is a scatter-add
    (None with need_grad_x=False). The index table has no gradient."""
    x = float_array(x, "x")
    check_ndim(x, "x", 3, "(N, C_in, n_in)")
    index = check_index(index, x.shape[2])
    x, w = _check_xw(x, w, index.shape[1], "index.shape[1]")
    grad_out = _check_grad_out(grad_out, x, w.shape[0], index.shape[0])
    return _core.receptive_conv_backward(grad_out, x, index, w, bool(need_grad_x))


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
