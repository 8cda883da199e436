"""The vectorised pure-NumPy contender (Kyoto Univ. exercise §5.6: convolution as im2col + one GEMM;
the relaxed receptive field paper's contraction as GEMMs, see the end of the file).

cs231n-style float32 im2col: the padded input is viewed as sliding windows with
``np.lib.stride_tricks.sliding_window_view`` and copied once into the column
matrix (C*kh*kw, N*OH*OW); the forward is a single matmul with the weight
matrix (O, C*kh*kw). The backward reuses the forward's columns for grad_weight
and scatters grad_columns back with col2im as a loop over the kh*kw kernel
offsets (each offset one strided, vectorised add). Pooling, batch norm and
unfold/fold are the usual reshape/broadcast NumPy formulations. Everything
stays float32 (float64 GEMMs by accident are the classic slowdown).

Only what the benchmark rows need is covered: stride/padding are ints, no
dilation or groups, pooling windows tile the input exactly.
"""
from __future__ import annotations

import numpy as np

_windows = np.lib.stride_tricks.sliding_window_view


def _pad(x, p):
    if p == 0:
        return x
    return np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))


def _out(size, k, s, p):
    return (size + 2 * p - k) // s + 1


def im2col(x, kh, kw, stride=1, padding=0):
    """(N, C, H, W) -> columns (C*kh*kw, N*OH*OW), rows in (c, i, j) order, columns in (n, oh, ow) order."""
    n, c, h, w = x.shape
    oh, ow = _out(h, kh, stride, padding), _out(w, kw, stride, padding)
    v = _windows(_pad(x, padding), (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride][:, :, :oh, :ow]
    # v: (N, C, OH, OW, kh, kw) -> (C, kh, kw, N, OH, OW), one copy
    return v.transpose(1, 4, 5, 0, 2, 3).reshape(c * kh * kw, n * oh * ow)


def col2im(cols, x_shape, kh, kw, stride=1, padding=0):
    """Adjoint of im2col: sums (C*kh*kw, N*OH*OW) columns back into (N, C, H, W)."""
    n, c, h, w = x_shape
    oh, ow = _out(h, kh, stride, padding), _out(w, kw, stride, padding)
    cols6 = cols.reshape(c, kh, kw, n, oh, ow)
    gxp = np.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    s = stride
    for i in range(kh):
        for j in range(kw):
            gxp[:, :, i:i + s * oh:s, j:j + s * ow:s] += cols6[:, i, j].transpose(1, 0, 2, 3)
    if padding:
        return gxp[:, :, padding:-padding, padding:-padding]
    return gxp


def conv2d(x, w, b=None, stride=1, padding=0, return_cols=False):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh, ow = _out(h, kh, stride, padding), _out(wd, kw, stride, padding)
    cols = im2col(x, kh, kw, stride, padding)
    y = w.reshape(o, -1) @ cols  # (O, N*OH*OW): the single GEMM
    if b is not None:
        y += b[:, None]
    y = np.ascontiguousarray(y.reshape(o, n, oh, ow).transpose(1, 0, 2, 3))
    return (y, cols) if return_cols else y


def conv2d_backward(gy, x_shape, w, cols, stride=1, padding=0):
    """Gradients given the forward's columns (as a layer caches them)."""
    o, c, kh, kw = w.shape
    gy2 = gy.transpose(1, 0, 2, 3).reshape(o, -1)  # (O, N*OH*OW)
    gw = (gy2 @ cols.T).reshape(w.shape)
    gb = gy.sum(axis=(0, 2, 3))
    gcols = w.reshape(o, -1).T @ gy2
    gx = col2im(gcols, x_shape, kh, kw, stride, padding)
    return gx, gw, gb


def unfold(x, k, padding=0, stride=1):
    """torch layout: (N, C*k*k, L)."""
    n, c, h, w = x.shape
    oh, ow = _out(h, k, stride, padding), _out(w, k, stride, padding)
    v = _windows(_pad(x, padding), (k, k), axis=(2, 3))[:, :, ::stride, ::stride][:, :, :oh, :ow]
    return v.transpose(0, 1, 4, 5, 2, 3).reshape(n, c * k * k, oh * ow)


def fold(cols, output_size, k, padding=0, stride=1):
    n, ckk, _ = cols.shape
    c = ckk // (k * k)
    h, w = output_size
    oh, ow = _out(h, k, stride, padding), _out(w, k, stride, padding)
    cols6 = cols.reshape(n, c, k, k, oh, ow)
    gxp = np.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    s = stride
    for i in range(k):
        for j in range(k):
            gxp[:, :, i:i + s * oh:s, j:j + s * ow:s] += cols6[:, :, i, j]
    if padding:
        return np.ascontiguousarray(gxp[:, :, padding:-padding, padding:-padding])
    return gxp


def _tiles(x, k):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // k, k, w // k, k)


def max_pool2d(x, k):
    return _tiles(x, k).max(axis=(3, 5))


def max_pool2d_with_argmax(x, k):
    """Forward keeping the (first) argmax of each window, for the backward."""
    n, c, h, w = x.shape
    win = _tiles(x, k).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // k, w // k, k * k)
    idx = win.argmax(axis=-1)[..., None]
    return np.take_along_axis(win, idx, axis=-1)[..., 0], idx


def max_pool2d_backward(gy, idx, x_shape, k):
    n, c, h, w = x_shape
    g = np.zeros((n, c, h // k, w // k, k * k), dtype=gy.dtype)
    np.put_along_axis(g, idx, gy[..., None], axis=-1)
    return g.reshape(n, c, h // k, w // k, k, k).transpose(0, 1, 2, 4, 3, 5).reshape(x_shape)


def avg_pool2d(x, k):
    return _tiles(x, k).mean(axis=(3, 5), dtype=x.dtype)


def avg_pool2d_backward(gy, x_shape, k):
    n, c, h, w = x_shape
    g = np.broadcast_to((gy * np.float32(1.0 / (k * k)))[:, :, :, None, :, None], (n, c, h // k, k, w // k, k))
    return g.reshape(x_shape)


def batch_norm_train(x, gamma, beta, eps=1e-5):
    """Returns (y, cache) with batch statistics over (N, H, W)."""
    mean = x.mean(axis=(0, 2, 3), keepdims=True, dtype=np.float32)
    xc = x - mean
    var = (xc * xc).mean(axis=(0, 2, 3), keepdims=True, dtype=np.float32)
    invstd = 1.0 / np.sqrt(var + np.float32(eps))
    xhat = xc * invstd
    y = xhat * gamma[None, :, None, None] + beta[None, :, None, None]
    return y, (xhat, invstd)


def batch_norm_backward(gy, gamma, cache):
    xhat, invstd = cache
    gb = gy.sum(axis=(0, 2, 3), dtype=np.float32)
    gg = (gy * xhat).sum(axis=(0, 2, 3), dtype=np.float32)
    m = gy.size // gy.shape[1]
    gx = (gamma[None, :, None, None] * invstd / np.float32(m)) * (
        np.float32(m) * gy - gb[None, :, None, None] - xhat * gg[None, :, None, None])
    return gx, gg, gb


# ---------------------------------------------------------------- relaxed receptive fields
# P[n, c, j, s] = sum_i x[n, c, i] L[i, j, s] (dense L) or x[n, c, index[j, s]] (index table,
# -1 reads 0), then y[n, o, j] = sum_{c, s} w[o, c, s] P[n, c, j, s] + b[o]. The patches are kept
# as the matrix (N*n_out, C_in*k) (rows per sample and output position, the im2col layout), so
# the mixing with w is one GEMM; for C_in = 1 building it is a free reshape.

def _patch_rows(P4):
    """(N, C, J, k) -> (N*J, C*k)."""
    n, c, j, k = P4.shape
    return P4.transpose(0, 2, 1, 3).reshape(n * j, c * k)


def _mix(patches, w, b, n, j):
    o = w.shape[0]
    y = (patches @ w.reshape(o, -1).T).reshape(n, j, o).transpose(0, 2, 1)  # (N*J, O) GEMM, viewed (N, O, J)
    if b is not None:
        return y + b[:, None]  # the bias add doubles as the copy into (N, O, J) order
    return np.ascontiguousarray(y)


def _unmix(gy, w, patches):
    """grad_patches (N*J, C*k), grad_w, grad_b from grad_y (N, O, J)."""
    n, o, j = gy.shape
    g = gy.transpose(0, 2, 1).reshape(n * j, o)
    gw = (g.T @ patches).reshape(w.shape)
    gb = gy.sum(axis=(0, 2))
    return g @ w.reshape(o, -1), gw, gb


def _patch_grad(gpatches, n, c, j, k):
    """(N*J, C*k) -> (N*C, J*k), the layout of x (N*C, n_in) @ L (n_in, J*k)."""
    return gpatches.reshape(n, j, c, k).transpose(0, 2, 1, 3).reshape(n * c, j * k)


def relaxed_conv(x, L, w, b=None, return_patches=False):
    """Dense receptive field: one GEMM (N*C_in, n_in) @ (n_in, n_out*k), then the mixing GEMM."""
    n, c, n_in = x.shape
    _, j, k = L.shape
    P = x.reshape(n * c, n_in) @ L.reshape(n_in, j * k)
    patches = _patch_rows(P.reshape(n, c, j, k))
    y = _mix(patches, w, b, n, j)
    return (y, patches) if return_patches else y


def relaxed_conv_backward(gy, x, L, w, patches):
    """(grad_x, grad_L, grad_w, grad_b) given the forward's patches: two GEMMs against grad_P."""
    n, c, n_in = x.shape
    _, j, k = L.shape
    gpatches, gw, gb = _unmix(gy, w, patches)
    gP = _patch_grad(gpatches, n, c, j, k)
    gx = (gP @ L.reshape(n_in, j * k).T).reshape(x.shape)
    gL = (x.reshape(n * c, n_in).T @ gP).reshape(L.shape)
    return gx, gL, gw, gb


def _padded_index(index, n_in):
    """-1 (zero padding) -> n_in, the zero column appended to x."""
    return np.where(index < 0, n_in, index)


def receptive_conv(x, index, w, b=None, return_patches=False):
    """Index table: a fancy-index gather of the patches (x with a zero column appended), then the GEMM."""
    n, c, n_in = x.shape
    j, k = index.shape
    xp = np.concatenate([x, np.zeros((n, c, 1), x.dtype)], axis=2)
    # np.take, not xp[:, :, idx]: fancy indexing returns the (N, C, J, k) result in a transposed
    # memory order, and turning that into patch rows is a slow strided copy (~15x the gather)
    patches = _patch_rows(np.take(xp, _padded_index(index, n_in), axis=2))  # (N, C, J, k) -> (N*J, C*k)
    y = _mix(patches, w, b, n, j)
    return (y, patches) if return_patches else y


def receptive_conv_backward(gy, x_shape, index, w, patches):
    """(grad_x, grad_w, grad_b); grad_x is the scatter-add of grad_P, done as ONE np.bincount
    over (sample*channel, input position) bins (float64 accumulation; the padding bin dropped)."""
    n, c, n_in = x_shape
    j, k = index.shape
    gpatches, gw, gb = _unmix(gy, w, patches)
    gP = _patch_grad(gpatches, n, c, j, k)  # (N*C, J*k)
    bins = (np.arange(n * c)[:, None] * (n_in + 1) + _padded_index(index, n_in).reshape(1, -1)).ravel()
    gx = np.bincount(bins, weights=gP.ravel(), minlength=n * c * (n_in + 1)).reshape(n * c, n_in + 1)
    return gx[:, :n_in].astype(gy.dtype).reshape(x_shape), gw, gb
