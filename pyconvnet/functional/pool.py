"""Pooling: max_pool2d (with argmax indices), avg_pool2d and their adaptive (global) forms, each with its backward."""
from __future__ import annotations

import numpy as np

from .. import _core
from .._args import as_int, batched, float_array, pair

__all__ = ["pool2d_output_size", "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
           "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward", "adaptive_max_pool2d", "adaptive_max_pool2d_backward"]


def pool2d_output_size(in_size, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(OH, OW) of a pooling window (torch's rule, including ceil_mode)."""
    (h, w), (kh, kw) = pair(in_size, "in_size", 0), pair(kernel_size, "kernel_size", 1)
    (sh, sw) = pair(kernel_size if stride is None else stride, "stride", 1)
    (ph, pw), (dh, dw) = pair(padding, "padding", 0), pair(dilation, "dilation", 1)
    return (_core.pool_out_size(h, kh, sh, ph, dh, bool(ceil_mode)), _core.pool_out_size(w, kw, sw, pw, dw, bool(ceil_mode)))


# ----------------------------------------------------------------- pooling
def _pool_args(x, kernel_size, stride, padding, dilation, ceil_mode):
    x = float_array(x, "x")
    x, unb = batched(x, "x")
    return (x, unb) + _pool_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)


def _pool_geometry(shape, kernel_size, stride, padding, dilation, ceil_mode):
    k = pair(kernel_size, "kernel_size", 1)
    s = k if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) else pair(stride, "stride", 1)
    p = pair(padding, "padding", 0)
    d = pair(dilation, "dilation", 1)
    if 2 * p[0] > k[0] or 2 * p[1] > k[1]:
        raise ValueError(f"padding: should be at most half of kernel_size, got padding={p}, kernel_size={k}")
    out = pool2d_output_size(shape[-2:], k, s, p, d, ceil_mode)
    if min(out) < 1:
        raise ValueError(f"kernel_size: window {k} (dilation {d}) is larger than the padded input "
                         f"({shape[-2] + 2 * p[0]}, {shape[-1] + 2 * p[1]}) of shape {tuple(shape)}")
    return k, s, p, d, bool(ceil_mode)


def _input_shape(input_shape, name="input_shape"):
    try:
        shape = tuple(as_int(v, name) for v in input_shape)
    except TypeError:
        raise TypeError(f"{name}: expected a tuple of ints, got {input_shape!r}") from None
    if len(shape) not in (3, 4) or min(shape) < 0:
        raise ValueError(f"{name}: expected (N, C, H, W) or (C, H, W) with non-negative sizes, got {input_shape!r}")
    return shape


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max pooling. x (N, C, H, W) -> (N, C, OH, OW); with return_indices also int64 flat
    indices h*W + w into each input plane (first maximum wins; NaN counts as maximum)."""
    x, unb, k, s, p, d, ceil_mode = _pool_args(x, kernel_size, stride, padding, dilation, ceil_mode)
    y, idx = _core.max_pool2d_forward(x, k, s, p, d, ceil_mode)
    if unb:
        y, idx = y[0], idx[0]
    return (y, idx) if return_indices else y


def max_pool2d_backward(grad_out, indices, input_shape):
    """Routes grad_out (N, C, OH, OW) to the argmax positions given by ``indices``; returns grad_x of input_shape."""
    shape = _input_shape(input_shape)
    grad_out = float_array(grad_out, "grad_out")
    indices = np.asarray(indices)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"indices: expected an integer array (as max_pool2d returns), got dtype {indices.dtype}")
    if grad_out.ndim != len(shape) or grad_out.shape[:-2] != shape[:-2]:
        raise ValueError(f"grad_out: expected shape {shape[:-2] + ('OH', 'OW')} for input_shape {shape}, "
                         f"got {grad_out.shape}")
    if indices.shape != grad_out.shape:
        raise ValueError(f"indices: expected shape {grad_out.shape} (that of grad_out), got {indices.shape}")
    unb = len(shape) == 3
    if unb:
        shape, grad_out, indices = (1,) + shape, grad_out[None], indices[None]
    # the values' range is checked in C++ (one pass, no min/max temporaries)
    gx = _core.max_pool2d_backward(grad_out, indices.astype(np.int64, copy=False), shape)
    return gx[0] if unb else gx


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling (torch's divisor rules for padding and ceil_mode). x (N, C, H, W) -> (N, C, OH, OW)."""
    x, unb, k, s, p, _, ceil_mode = _pool_args(x, kernel_size, stride, padding, 1, ceil_mode)
    y = _core.avg_pool2d_forward(x, k, s, p, ceil_mode, bool(count_include_pad))
    return y[0] if unb else y


def avg_pool2d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True):
    """Gradient of avg_pool2d with respect to its input, shaped ``input_shape``."""
    shape = _input_shape(input_shape)
    grad_out = float_array(grad_out, "grad_out")
    k, s, p, _, ceil_mode = _pool_geometry(shape, kernel_size, stride, padding, 1, ceil_mode)
    unb = len(shape) == 3
    out = pool2d_output_size(shape[-2:], k, s, p, 1, ceil_mode)
    want = tuple(shape[:-2]) + out
    if grad_out.shape != want:
        raise ValueError(f"grad_out: expected shape {want} (the output of avg_pool2d), got {grad_out.shape}")
    full = (1,) + shape if unb else shape
    gx = _core.avg_pool2d_backward(grad_out.reshape(full[:2] + out), full, k, s, p, ceil_mode, bool(count_include_pad))
    return gx[0] if unb else gx


# ----------------------------------------------------------------- adaptive (global) pooling
def _adaptive_size(output_size, shape):
    if output_size is None:
        raise ValueError("output_size: expected an int or a pair (None entries keep the input size), got None")
    vals = list(output_size) if isinstance(output_size, (tuple, list)) else [output_size] * 2
    if len(vals) != 2:
        raise ValueError(f"output_size: expected an int or a pair, got {output_size!r}")
    out = tuple(shape[-2 + i] if v is None else as_int(v, "output_size") for i, v in enumerate(vals))
    if min(out) < 1:
        raise ValueError(f"output_size: expected positive sizes, got {output_size!r}")
    return out


def _bins(n, out):
    """torch's adaptive windows along one axis: [floor(i n / out), ceil((i + 1) n / out))."""
    i = np.arange(out)
    return (i * n) // out, -((-(i + 1) * n) // out)


def _adaptive_args(x, output_size):
    x = float_array(x, "x")
    x, unb = batched(x, "x")
    if min(x.shape[2:]) < 1:
        raise ValueError(f"x: adaptive pooling needs non-empty planes, got shape {x.shape}")
    return x, unb, _adaptive_size(output_size, x.shape)


def adaptive_avg_pool2d(x, output_size):
    """torch's F.adaptive_avg_pool2d: x (N, C, H, W) -> (N, C, OH, OW), output (i, j) the mean of
    rows [floor(i H/OH), ceil((i+1) H/OH)) and the columns alike. (1, 1) is global average pooling;
    sizes that divide the input are one reshape-mean."""
    x, unb, (oh, ow) = _adaptive_args(x, output_size)
    n, c, h, w = x.shape
    if h % oh == 0 and w % ow == 0:
        y = x.reshape(n, c, oh, h // oh, ow, w // ow).mean(axis=(3, 5), dtype=x.dtype)
    else:
        (h0, h1), (w0, w1) = _bins(h, oh), _bins(w, ow)
        y = np.empty((n, c, oh, ow), x.dtype)
        for i in range(oh):  # one vectorised reduction per output cell (few cells)
            for j in range(ow):
                y[:, :, i, j] = x[:, :, h0[i]:h1[i], w0[j]:w1[j]].mean(axis=(2, 3), dtype=x.dtype)
    return y[0] if unb else y


def adaptive_avg_pool2d_backward(grad_out, input_shape):
    """Gradient of adaptive_avg_pool2d: each output's gradient spread evenly over its window."""
    shape = _input_shape(input_shape)
    grad_out = float_array(grad_out, "grad_out")
    unb = len(shape) == 3
    full = (1,) + shape if unb else shape
    g = grad_out[None] if unb else grad_out
    n, c, h, w = full
    if g.ndim != 4 or g.shape[:2] != (n, c):
        raise ValueError(f"grad_out: expected shape {shape[:-2] + ('OH', 'OW')} for input_shape {shape}, "
                         f"got {grad_out.shape}")
    oh, ow = g.shape[2:]
    if h % oh == 0 and w % ow == 0:
        kh, kw = h // oh, w // ow
        gx = np.broadcast_to((g / g.dtype.type(kh * kw))[:, :, :, None, :, None], (n, c, oh, kh, ow, kw))
        gx = gx.reshape(full).copy()
    else:
        (h0, h1), (w0, w1) = _bins(h, oh), _bins(w, ow)
        gx = np.zeros(full, g.dtype)
        for i in range(oh):
            for j in range(ow):
                cnt = (h1[i] - h0[i]) * (w1[j] - w0[j])
                gx[:, :, h0[i]:h1[i], w0[j]:w1[j]] += (g[:, :, i, j] / g.dtype.type(cnt))[:, :, None, None]
    return gx[0] if unb else gx


def adaptive_max_pool2d(x, output_size, return_indices=False):
    """torch's F.adaptive_max_pool2d (the windows of adaptive_avg_pool2d); with return_indices also
    int64 flat indices h*W + w into each input plane. The first maximum in row-major window order
    wins, as max_pool2d; NaN counts as the maximum (the first NaN)."""
    x, unb, (oh, ow) = _adaptive_args(x, output_size)
    n, c, h, w = x.shape
    (h0, h1), (w0, w1) = _bins(h, oh), _bins(w, ow)
    y = np.empty((n, c, oh, ow), x.dtype)
    idx = np.empty((n, c, oh, ow), np.int64)
    for i in range(oh):
        for j in range(ow):
            win = x[:, :, h0[i]:h1[i], w0[j]:w1[j]]
            kw = w1[j] - w0[j]
            flat = win.reshape(n, c, -1)
            a = np.argmax(flat, axis=2)  # first maximum (first NaN: argmax treats NaN as the maximum)
            y[:, :, i, j] = np.take_along_axis(flat, a[:, :, None], axis=2)[:, :, 0]
            idx[:, :, i, j] = (h0[i] + a // kw) * w + w0[j] + a % kw
    if unb:
        y, idx = y[0], idx[0]
    return (y, idx) if return_indices else y


def adaptive_max_pool2d_backward(grad_out, indices, input_shape):
    """Gradient of adaptive_max_pool2d: routed to the argmax of each window (overlapping windows add)."""
    return max_pool2d_backward(grad_out, indices, input_shape)
