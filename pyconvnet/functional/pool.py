"""Pooling: max_pool2d (with argmax indices) and avg_pool2d, each with its backward."""
from __future__ import annotations

import numpy as np

from .. import _core
from .._args import as_int, batched, float_array, pair

__all__ = ["pool2d_output_size", "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward"]


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
