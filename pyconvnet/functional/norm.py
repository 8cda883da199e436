"""Batch normalisation (training and inference forms) and its backward."""
from __future__ import annotations

import numpy as np

from .. import _core
from .._args import as_float, float_array

__all__ = ["batch_norm", "batch_norm_backward"]


# ----------------------------------------------------------------- batch norm
def _channel_vector(v, name, c, dtype, allow_none=True):
    if v is None:
        if allow_none:
            return None
        raise ValueError(f"{name}: required, got None")
    v = float_array(v, name, dtype)
    if v.shape != (c,):
        raise ValueError(f"{name}: expected shape ({c},) (one value per channel), got {v.shape}")
    return v


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
               return_stats=False):
    """Batch normalisation over x (N, C) or (N, C, *spatial), statistics per channel.

    training=True normalises with the batch statistics and, when given, updates
    running_mean/running_var in place: r = (1 - momentum) * r + momentum * batch,
    with the unbiased batch variance for running_var (as torch).
    training=False normalises with the running statistics.
    return_stats=True returns (y, mean, invstd) with invstd = 1/sqrt(var + eps):
    what batch_norm_backward needs.
    """
    x = float_array(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x: expected (N, C) or (N, C, *spatial), got shape {x.shape}")
    c = x.shape[1]
    weight = _channel_vector(weight, "weight", c, x.dtype)
    bias = _channel_vector(bias, "bias", c, x.dtype)
    eps = as_float(eps, "eps")
    if not eps > 0:
        raise ValueError(f"eps: expected a positive float, got {eps}")
    if training:
        count = x.size // c if c else 0
        if count < 2:
            raise ValueError(f"x: training batch norm needs more than 1 value per channel, got shape {x.shape}")
        for name, r in (("running_mean", running_mean), ("running_var", running_var)):
            if r is not None:
                if not isinstance(r, np.ndarray) or r.dtype.kind != "f" or not r.flags.writeable:
                    raise TypeError(f"{name}: must be a writable float ndarray (it is updated in place), "
                                    f"got {type(r).__name__}")
                if r.shape != (c,):
                    raise ValueError(f"{name}: expected shape ({c},), got {r.shape}")
        momentum = as_float(momentum, "momentum")
        y, mean, var, invstd = _core.batch_norm_train(x, weight, bias, eps)
        if running_mean is not None:
            running_mean *= 1.0 - momentum
            running_mean += momentum * mean
        if running_var is not None:
            running_var *= 1.0 - momentum
            running_var += (momentum * count / (count - 1)) * var
        return (y, mean, invstd) if return_stats else y
    mean = _channel_vector(running_mean, "running_mean", c, x.dtype, allow_none=False)
    var = _channel_vector(running_var, "running_var", c, x.dtype, allow_none=False)
    y = _core.batch_norm_eval(x, mean, var, weight, bias, eps)
    if return_stats:
        return y, mean.copy(), (1.0 / np.sqrt(var.astype(np.float64) + eps)).astype(x.dtype)
    return y


def batch_norm_backward(grad_out, x, weight, mean, invstd):
    """Training-mode batch-norm gradient (Kyoto Univ. exercise, eqs. 32-37).

    grad_out, x: (N, C, *spatial); weight (C,) or None (= ones); mean, invstd (C,) from
    batch_norm(..., training=True, return_stats=True). Returns (grad_x, grad_weight, grad_bias).
    """
    x = float_array(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x: expected (N, C) or (N, C, *spatial), got shape {x.shape}")
    grad_out = float_array(grad_out, "grad_out", x.dtype)
    if grad_out.shape != x.shape:
        raise ValueError(f"grad_out: expected the shape of x {x.shape}, got {grad_out.shape}")
    c = x.shape[1]
    weight = _channel_vector(weight, "weight", c, x.dtype)
    mean = _channel_vector(mean, "mean", c, x.dtype, allow_none=False)
    invstd = _channel_vector(invstd, "invstd", c, x.dtype, allow_none=False)
    return _core.batch_norm_backward(grad_out, x, weight, mean, invstd)
