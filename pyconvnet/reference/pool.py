"""Naive pooling: max (first maximum wins, Kyoto Univ. exercise §5.7, eqs. 63-64) and average."""
from __future__ import annotations

import operator

import numpy as np

from ._common import _F64, _as_batch, _float_dtype, _pair, _pool_out_size

__all__ = ["max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward", "adaptive_avg_pool2d",
           "adaptive_avg_pool2d_backward", "adaptive_max_pool2d", "adaptive_max_pool2d_backward"]


# ============================================================================ pooling
def _pool_geometry(h, w, kernel_size, stride, padding, dilation, ceil_mode):
    """Parses pooling arguments; returns (k, s, p, d, OH, OW). stride None (or []) means kernel_size."""
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) else _pair(stride, "stride")
    p, d = _pair(padding, "padding"), _pair(dilation, "dilation")
    if 2 * p[0] > k[0] or 2 * p[1] > k[1]:
        # torch's rule: more padding than that could make a window all padding
        raise ValueError(f"padding {p} should be at most half of kernel_size {k}")
    oh = _pool_out_size(h, k[0], s[0], p[0], d[0], ceil_mode)
    ow = _pool_out_size(w, k[1], s[1], p[1], d[1], ceil_mode)
    return k, s, p, d, oh, ow


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max pooling (torch's F.max_pool2d). x (N, C, H, W) or (C, H, W) -> (N, C, OH, OW).

    The Kyoto Univ. exercise's eq. (63) with torch's stride/padding/dilation/ceil_mode:
        y[n, c, i, j] = max_{s, t} x[n, c, i*sh - ph + s*dh, j*sw - pw + t*dw]
    where positions outside the input count as -inf (implicit padding, never chosen).
    With return_indices also returns int64 indices h*W + w into each input plane.

    The window is scanned row-major and a value replaces the current maximum when it is
    strictly greater or NaN, exactly torch's CPU rule: the first of equal maxima wins,
    and NaN propagates (the last NaN in the window is the argmax). A window that lies
    wholly in the padding (possible with dilation) gives -inf and index -1 (pyconvnet's
    convention: torch returns an arbitrary index there); the backward skips it.
    """
    x4, unbatched = _as_batch(x, "x")
    dtype = _float_dtype(x4)
    n, c, h, w = x4.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), oh, ow = _pool_geometry(h, w, kernel_size, stride, padding, dilation,
                                                                    ceil_mode)
    x64 = x4.astype(_F64)

    y = np.empty((n, c, oh, ow))
    idx = np.empty((n, c, oh, ow), np.int64)
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                for j in range(ow):
                    best, arg = -np.inf, -1
                    for s in range(kh):
                        hh = i * sh - ph + s * dh
                        if not 0 <= hh < h:
                            continue
                        for t in range(kw):
                            ww = j * sw - pw + t * dw
                            if not 0 <= ww < w:
                                continue
                            v = x64[b, ch, hh, ww]
                            # the first real element starts the scan (so an all -inf window
                            # points at its first element, as torch); then strictly greater or NaN
                            if arg == -1 or v > best or np.isnan(v):
                                best, arg = v, hh * w + ww
                    y[b, ch, i, j], idx[b, ch, i, j] = best, arg
    y = y.astype(dtype)
    if unbatched:
        y, idx = y[0], idx[0]
    return (y, idx) if return_indices else y


def max_pool2d_backward(grad_out, indices, input_shape):
    """Gradient of max_pool2d: grad_x of ``input_shape`` ((N, C, H, W) or (C, H, W)).

    The Kyoto Univ. exercise's eq. (64): each output's gradient goes to the input element that was its
    maximum (``indices`` from max_pool2d(..., return_indices=True), flat h*W + w per
    plane); windows sharing an argmax add up. Index -1 (no argmax) contributes nothing.
    """
    go = np.asarray(grad_out)
    dtype = _float_dtype(go)
    indices = np.asarray(indices)
    shape = tuple(operator.index(v) for v in input_shape)
    unbatched = len(shape) == 3
    if unbatched:
        shape, go, indices = (1,) + shape, go[None], indices[None]
    if len(shape) != 4 or go.shape[:2] != shape[:2] or indices.shape != go.shape:
        raise ValueError(f"grad_out {go.shape} / indices {indices.shape} do not match input_shape {shape}")
    n, c, h, w = shape
    go64 = go.astype(_F64)

    gx = np.zeros((n, c, h * w))
    for b in range(n):
        for ch in range(c):
            for i in range(go.shape[2]):
                for j in range(go.shape[3]):
                    k = int(indices[b, ch, i, j])
                    if k >= 0:
                        gx[b, ch, k] += go64[b, ch, i, j]
    gx = gx.reshape(shape).astype(dtype)
    return gx[0] if unbatched else gx


def _avg_window(o, s, p, k, size, count_include_pad):
    """torch's avg-pool window along one axis: (start, end, divisor_factor).

    The window is first clipped to the *padded* input (end <= size + p; with ceil_mode
    the last window can run past it) - that length is the divisor with
    count_include_pad - and then to the real input, whose length is the divisor without."""
    start = o * s - p
    end = min(start + k, size + p)
    padded_len = end - start
    start, end = max(start, 0), min(end, size)
    return start, end, (padded_len if count_include_pad else end - start)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling (torch's F.avg_pool2d). x (N, C, H, W) or (C, H, W) -> (N, C, OH, OW).

    y[n, c, i, j] = sum of the real input elements in the window / divisor, where the
    divisor is the window clipped to the padded input (count_include_pad=True: zero
    padding counts, ceil_mode overhang does not) or to the real input (False).
    """
    x4, unbatched = _as_batch(x, "x")
    dtype = _float_dtype(x4)
    n, c, h, w = x4.shape
    (kh, kw), (sh, sw), (ph, pw), _, oh, ow = _pool_geometry(h, w, kernel_size, stride, padding, 1, ceil_mode)
    x64 = x4.astype(_F64)

    y = np.zeros((n, c, oh, ow))
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                h0, h1, fh = _avg_window(i, sh, ph, kh, h, count_include_pad)
                for j in range(ow):
                    w0, w1, fw = _avg_window(j, sw, pw, kw, w, count_include_pad)
                    y[b, ch, i, j] = np.sum(x64[b, ch, h0:h1, w0:w1]) / (fh * fw)
    y = y.astype(dtype)
    return y[0] if unbatched else y


def avg_pool2d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True):
    """Gradient of avg_pool2d: grad_x of ``input_shape`` ((N, C, H, W) or (C, H, W)).

    Each output spreads grad / divisor evenly over the real input elements of its
    window (the same windows and divisors as the forward); overlaps add up.
    """
    go = np.asarray(grad_out)
    dtype = _float_dtype(go)
    shape = tuple(operator.index(v) for v in input_shape)
    unbatched = len(shape) == 3
    if unbatched:
        shape, go = (1,) + shape, go[None]
    n, c, h, w = shape
    (kh, kw), (sh, sw), (ph, pw), _, oh, ow = _pool_geometry(h, w, kernel_size, stride, padding, 1, ceil_mode)
    if go.shape != (n, c, oh, ow):
        raise ValueError(f"grad_out: expected shape {(n, c, oh, ow)}, got {go.shape}")
    go64 = go.astype(_F64)

    gx = np.zeros(shape)
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                h0, h1, fh = _avg_window(i, sh, ph, kh, h, count_include_pad)
                for j in range(ow):
                    w0, w1, fw = _avg_window(j, sw, pw, kw, w, count_include_pad)
                    gx[b, ch, h0:h1, w0:w1] += go64[b, ch, i, j] / (fh * fw)
    gx = gx.astype(dtype)
    return gx[0] if unbatched else gx


# ============================================================================ adaptive pooling
def _adaptive_window(i, n, out):
    """torch's adaptive window: [floor(i n / out), ceil((i + 1) n / out))."""
    return (i * n) // out, -(-((i + 1) * n) // out)


def _adaptive_out(output_size, h, w):
    oh, ow = (output_size, output_size) if not isinstance(output_size, (tuple, list)) else output_size
    return (h if oh is None else oh), (w if ow is None else ow)


def adaptive_avg_pool2d(x, output_size):
    """y[n, c, i, j] = mean of x over the adaptive window (rows of i, columns of j)."""
    x4, unbatched = _as_batch(x, "x")
    n, c, h, w = x4.shape
    oh, ow = _adaptive_out(output_size, h, w)
    x64 = x4.astype(_F64)
    y = np.zeros((n, c, oh, ow))
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                h0, h1 = _adaptive_window(i, h, oh)
                for j in range(ow):
                    w0, w1 = _adaptive_window(j, w, ow)
                    y[b, ch, i, j] = np.sum(x64[b, ch, h0:h1, w0:w1]) / ((h1 - h0) * (w1 - w0))
    y = y.astype(_float_dtype(x4))
    return y[0] if unbatched else y


def adaptive_avg_pool2d_backward(grad_out, input_shape):
    go = np.asarray(grad_out)
    shape = tuple(operator.index(v) for v in input_shape)
    unbatched = len(shape) == 3
    if unbatched:
        shape, go = (1,) + shape, go[None]
    n, c, h, w = shape
    oh, ow = go.shape[2:]
    gx = np.zeros(shape)
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                h0, h1 = _adaptive_window(i, h, oh)
                for j in range(ow):
                    w0, w1 = _adaptive_window(j, w, ow)
                    gx[b, ch, h0:h1, w0:w1] += float(go[b, ch, i, j]) / ((h1 - h0) * (w1 - w0))
    gx = gx.astype(_float_dtype(go))
    return gx[0] if unbatched else gx


def adaptive_max_pool2d(x, output_size, return_indices=False):
    """Max over each adaptive window, scanned row-major; the first maximum wins."""
    x4, unbatched = _as_batch(x, "x")
    n, c, h, w = x4.shape
    oh, ow = _adaptive_out(output_size, h, w)
    x64 = x4.astype(_F64)
    y = np.empty((n, c, oh, ow))
    idx = np.empty((n, c, oh, ow), np.int64)
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                h0, h1 = _adaptive_window(i, h, oh)
                for j in range(ow):
                    w0, w1 = _adaptive_window(j, w, ow)
                    best, arg = None, -1
                    for hh in range(h0, h1):
                        for ww in range(w0, w1):
                            v = x64[b, ch, hh, ww]
                            if best is None or v > best:
                                best, arg = v, hh * w + ww
                    y[b, ch, i, j], idx[b, ch, i, j] = best, arg
    y = y.astype(_float_dtype(x4))
    if unbatched:
        y, idx = y[0], idx[0]
    return (y, idx) if return_indices else y


def adaptive_max_pool2d_backward(grad_out, indices, input_shape):
    """Each output's gradient goes to its window's argmax."""
    return max_pool2d_backward(grad_out, indices, input_shape)
