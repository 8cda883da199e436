"""Naive fully connected layer."""
from __future__ import annotations

import numpy as np

from ._common import _F64, _float_dtype

__all__ = ["linear", "linear_backward"]


# ============================================================================ linear / relu
def linear(x, weight, bias=None):
    """Fully connected layer (torch's F.linear): y = x W^T + b.

    x (..., in_features); weight (out_features, in_features); bias (out_features,) or None.
    Returns (..., out_features): y[r, o] = sum_k x[r, k] * W[o, k] + b[o] for each row r.
    """
    x = np.asarray(x)
    dtype = _float_dtype(x)
    weight = np.asarray(weight, _F64)
    out_f, in_f = weight.shape
    if x.ndim < 1 or x.shape[-1] != in_f:
        raise ValueError(f"x {x.shape}: last dimension must be in_features = {in_f}")
    xr = x.reshape(-1, in_f).astype(_F64)
    b = np.zeros(out_f) if bias is None else np.asarray(bias, _F64)
    y = np.empty((xr.shape[0], out_f))
    for r in range(xr.shape[0]):
        for o in range(out_f):
            y[r, o] = np.sum(xr[r] * weight[o]) + b[o]
    return y.reshape(x.shape[:-1] + (out_f,)).astype(dtype)


def linear_backward(grad_out, x, weight, *, need_grad_x=True):
    """Gradients of linear: (grad_x, grad_weight, grad_bias) shaped like x, weight and (out_features,).

    dE/dx = dE/dy W, dE/dW = sum over rows of dE/dy^T x, dE/db = sum over rows of dE/dy.
    grad_x is None when need_grad_x=False.
    """
    x = np.asarray(x)
    dtype = _float_dtype(x)
    weight = np.asarray(weight, _F64)
    out_f, in_f = weight.shape
    xr = x.reshape(-1, in_f).astype(_F64)
    gy = np.asarray(grad_out, _F64).reshape(-1, out_f)
    if gy.shape[0] != xr.shape[0]:
        raise ValueError(f"grad_out {np.shape(grad_out)} does not match x {x.shape} and weight {weight.shape}")
    gx = np.zeros_like(xr)
    gw = np.zeros_like(weight)
    for r in range(xr.shape[0]):
        for o in range(out_f):
            gx[r] += gy[r, o] * weight[o]
            gw[o] += gy[r, o] * xr[r]
    gb = gy.sum(axis=0)
    gx = gx.reshape(x.shape).astype(dtype) if need_grad_x else None
    return gx, gw.astype(dtype), gb.astype(dtype)
