"""Naive batch normalisation (Kyoto Univ. exercise §5.3, eqs. 28-38)."""
from __future__ import annotations

import numpy as np

from ._common import _F64, _float_dtype

__all__ = ["batch_norm", "batch_norm_backward"]


# ============================================================================ batch normalisation
def _channels_first(a):
    """(N, C, *spatial) -> (C, N*prod(spatial)) float64: one row per channel holding all
    the values its statistics are taken over (the B of Kyoto Univ. exercise §5.3)."""
    a = np.asarray(a, _F64)
    return np.moveaxis(a, 1, 0).reshape(a.shape[1], -1)


def _from_channels_first(rows, shape):
    """Inverse of _channels_first."""
    return np.moveaxis(rows.reshape((shape[1], shape[0]) + tuple(shape[2:])), 0, 1)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
               return_stats=False):
    """Batch normalisation (torch's F.batch_norm). x (N, C) or (N, C, *spatial) -> same shape.

    Statistics are per channel over all other axes (B = N * prod(spatial) values).
    weight (gamma) and bias (beta) are (C,) or None (gamma = 1, beta = 0).

    training=True: the Kyoto Univ. exercise's eqs. (28)-(31): mu = mean, var = biased variance,
    xhat = (x - mu) / sqrt(var + eps), y = gamma * xhat + beta. running_mean /
    running_var (C,), when not None, are updated IN PLACE:
    running = (1 - momentum) * running + momentum * batch, with the unbiased variance
    var * B / (B - 1) for running_var (torch). B must be > 1 (torch raises otherwise).

    training=False, eq. (38): y = gamma / sqrt(Var + eps) * x + (beta - gamma * E / sqrt(Var + eps))
    with E, Var the running statistics.

    return_stats=True returns (y, mean, invstd), invstd = 1 / sqrt(var + eps): the batch
    (biased) statistics in training, the running ones in evaluation; all in x's dtype.
    """
    x = np.asarray(x)
    dtype = _float_dtype(x)
    if x.ndim < 2:
        raise ValueError(f"x: expected (N, C) or (N, C, *spatial), got shape {x.shape}")
    c = x.shape[1]
    rows = _channels_first(x)
    count = rows.shape[1]
    gamma = np.ones(c) if weight is None else np.asarray(weight, _F64)
    beta = np.zeros(c) if bias is None else np.asarray(bias, _F64)

    out = np.empty_like(rows)
    mean, invstd = np.empty(c), np.empty(c)
    if training:
        if count < 2:
            raise ValueError(f"Expected more than 1 value per channel when training, got input of shape {x.shape}")
        var = np.empty(c)
        for ch in range(c):
            xi = rows[ch]
            mean[ch] = np.sum(xi) / count                                   # eq. (28)
            var[ch] = np.sum((xi - mean[ch]) ** 2) / count                  # eq. (29), biased
            invstd[ch] = 1.0 / np.sqrt(var[ch] + eps)
            xhat = (xi - mean[ch]) * invstd[ch]                             # eq. (30)
            out[ch] = gamma[ch] * xhat + beta[ch]                           # eq. (31)
        if running_mean is not None:
            running_mean[...] = (1 - momentum) * np.asarray(running_mean, _F64) + momentum * mean
        if running_var is not None:
            # the running estimate is of the population variance, hence Bessel's correction
            running_var[...] = (1 - momentum) * np.asarray(running_var, _F64) + momentum * var * count / (count - 1)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("running_mean and running_var are required when training=False")
        e, v = np.asarray(running_mean, _F64), np.asarray(running_var, _F64)
        for ch in range(c):
            mean[ch] = e[ch]
            invstd[ch] = 1.0 / np.sqrt(v[ch] + eps)
            scale = gamma[ch] * invstd[ch]
            out[ch] = scale * rows[ch] + (beta[ch] - scale * e[ch])         # eq. (38)
    y = _from_channels_first(out, x.shape).astype(dtype)
    if return_stats:
        return y, mean.astype(dtype), invstd.astype(dtype)
    return y


def batch_norm_backward(grad_out, x, weight, mean, invstd):
    """Training-mode batch-norm gradient: returns (grad_x, grad_weight, grad_bias).

    grad_out, x (N, C) or (N, C, *spatial); weight (C,) or None (gamma = 1); mean, invstd
    (C,) the batch statistics from batch_norm(..., training=True, return_stats=True).
    grad_x has x's shape; grad_weight and grad_bias are (C,) (returned even when weight
    is None). The Kyoto Univ. exercise's eqs. (32)-(37), per channel, with 1/sqrt(var + eps) = invstd and
    B = N * prod(spatial):
        dxhat = dy * gamma                                                        (32)
        dvar  = sum(dxhat * (x - mu)) * (-1/2) * invstd^3                         (33)
        dmu   = sum(dxhat * (-invstd)) + dvar * sum(-2 (x - mu)) / B              (34)
        dx    = dxhat * invstd + dvar * 2 (x - mu) / B + dmu / B                  (35)
        dgamma = sum(dy * xhat), dbeta = sum(dy)                                  (36), (37)
    """
    x = np.asarray(x)
    dtype = _float_dtype(x)
    if x.ndim < 2:
        raise ValueError(f"x: expected (N, C) or (N, C, *spatial), got shape {x.shape}")
    if np.shape(grad_out) != x.shape:
        raise ValueError(f"grad_out: expected the shape of x {x.shape}, got {np.shape(grad_out)}")
    c = x.shape[1]
    rows, dys = _channels_first(x), _channels_first(grad_out)
    count = rows.shape[1]
    gamma = np.ones(c) if weight is None else np.asarray(weight, _F64)
    mu, inv = np.asarray(mean, _F64), np.asarray(invstd, _F64)

    dx = np.empty_like(rows)
    dgamma, dbeta = np.empty(c), np.empty(c)
    for ch in range(c):
        xc = rows[ch] - mu[ch]
        dy = dys[ch]
        dxhat = dy * gamma[ch]                                                           # (32)
        dvar = np.sum(dxhat * xc) * -0.5 * inv[ch] ** 3                                  # (33)
        dmu = np.sum(dxhat * -inv[ch]) + dvar * np.sum(-2.0 * xc) / count                # (34)
        dx[ch] = dxhat * inv[ch] + dvar * 2.0 * xc / count + dmu / count                 # (35)
        dgamma[ch] = np.sum(dy * xc * inv[ch])                                           # (36)
        dbeta[ch] = np.sum(dy)                                                           # (37)
    return _from_channels_first(dx, x.shape).astype(dtype), dgamma.astype(dtype), dbeta.astype(dtype)
