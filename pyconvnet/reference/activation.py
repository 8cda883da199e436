"""Naive activations."""
from __future__ import annotations

import math

import numpy as np

from ._common import _float_dtype

__all__ = ["relu", "relu_backward", "gelu", "gelu_backward", "erf", "erf_backward", "hardtanh", "hardtanh_backward",
           "log_softmax", "log_softmax_backward"]


def relu(x):
    """max(x, 0) elementwise; any shape. NaN stays NaN (as torch)."""
    x = np.asarray(x)
    return np.where(x > 0, x, np.where(np.isnan(x), x, 0)).astype(_float_dtype(x))


def relu_backward(grad_out, y):
    """Gradient of relu given its output y: grad_out where y > 0, else 0."""
    y = np.asarray(y)
    return np.where(y > 0, np.asarray(grad_out), 0).astype(_float_dtype(y))


# ============================================================================ GELU, erf, hardtanh, log_softmax
_SQRT2 = math.sqrt(2.0)
_TANH_C = math.sqrt(2.0 / math.pi)


def _elementwise(f, *arrays):
    """f applied element by element in float64 (a plain loop), cast back to the input's dtype."""
    a0 = np.asarray(arrays[0])
    flat = [np.asarray(a, np.float64).ravel() for a in arrays]
    out = np.array([f(*vals) for vals in zip(*flat)], np.float64).reshape(a0.shape)
    return out.astype(_float_dtype(a0))


def _phi(v):
    """Phi(v) = erfc(-v / sqrt 2) / 2: the normal CDF, exact in both tails."""
    return 0.5 * math.erfc(-v / _SQRT2)


def _gelu_tanh_parts(v):
    u = _TANH_C * (v + 0.044715 * v ** 3)
    # 1 + tanh(u) = 2 / (1 + exp(-2u)): no cancellation for negative u
    s = 1.0 / (1.0 + math.exp(-2.0 * u)) if u > -350 else 0.0
    return u, s


def gelu(x, approximate="none"):
    """GELU (Hendrycks & Gimpel): x Phi(x), or x/2 (1 + tanh(sqrt(2/pi)(x + 0.044715 x^3)))."""
    def f(v):
        if math.isnan(v):
            return v
        if approximate == "tanh":
            return v * _gelu_tanh_parts(v)[1] if math.isfinite(v) else (v if v > 0 else math.nan)
        return v * _phi(v) if math.isfinite(v) else (v if v > 0 else math.nan)
    return _elementwise(f, x)


def gelu_backward(grad_out, x, approximate="none"):
    """grad_out * d gelu / dx: Phi(x) + x phi(x), or for the tanh form
    s + x * 2 s (1 - s) * sqrt(2/pi) (1 + 3 * 0.044715 x^2), s = (1 + tanh(u)) / 2."""
    def f(g, v):
        if approximate == "tanh":
            _, s = _gelu_tanh_parts(v)
            return g * (s + v * 2 * s * (1 - s) * _TANH_C * (1 + 3 * 0.044715 * v * v))
        return g * (_phi(v) + v * math.exp(-0.5 * v * v) / math.sqrt(2 * math.pi))
    return _elementwise(f, grad_out, x)


def erf(x):
    """math.erf elementwise."""
    return _elementwise(lambda v: v if math.isnan(v) else math.erf(v), x)


def erf_backward(grad_out, x):
    """grad_out * 2/sqrt(pi) exp(-x^2)."""
    return _elementwise(lambda g, v: g * 2 / math.sqrt(math.pi) * math.exp(-v * v), grad_out, x)


def hardtanh(x, min_val=-1.0, max_val=1.0):
    """min(max(x, min_val), max_val) elementwise; NaN stays NaN."""
    return _elementwise(lambda v: v if math.isnan(v) else min(max(v, min_val), max_val), x)


def hardtanh_backward(grad_out, x, min_val=-1.0, max_val=1.0):
    """grad_out strictly inside (min_val, max_val), else 0."""
    return _elementwise(lambda g, v: g if min_val < v < max_val else 0.0, grad_out, x)


def log_softmax(x, axis=1):
    """log(exp(x_i) / sum_j exp(x_j)) along ``axis``, one slice at a time (shifted by its max)."""
    x = np.asarray(x)
    x64 = np.moveaxis(x.astype(np.float64), axis, -1)
    out = np.empty_like(x64)
    for idx in np.ndindex(*x64.shape[:-1]):
        row = x64[idx]
        m = max(row)
        lse = m + math.log(sum(math.exp(v - m) for v in row))
        out[idx] = [v - lse for v in row]
    return np.moveaxis(out, -1, axis).astype(_float_dtype(x))


def log_softmax_backward(grad_out, y, axis=1):
    """d/dx_i of sum_k g_k y_k = g_i - softmax_i * sum_k g_k, softmax = exp(y)."""
    y = np.asarray(y)
    y64 = np.moveaxis(y.astype(np.float64), axis, -1)
    g64 = np.moveaxis(np.asarray(grad_out, np.float64), axis, -1)
    out = np.empty_like(y64)
    for idx in np.ndindex(*y64.shape[:-1]):
        total = sum(g64[idx])
        out[idx] = [g - math.exp(v) * total for g, v in zip(g64[idx], y64[idx])]
    return np.moveaxis(out, -1, axis).astype(_float_dtype(y))
