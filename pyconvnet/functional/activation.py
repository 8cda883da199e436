"""Elementwise activations (relu, sigmoid, gelu, erf, hardtanh), log_softmax and inverted dropout."""
from __future__ import annotations

import numpy as np

from .. import _core
from .._args import as_float, as_int, float_array
from .._random import draw_seed

__all__ = ["relu", "relu_backward", "sigmoid", "sigmoid_backward", "dropout", "dropout_backward", "gelu", "gelu_backward",
           "erf", "erf_backward", "hardtanh", "hardtanh_backward", "log_softmax", "log_softmax_backward"]


# ----------------------------------------------------------------- activations
def relu(x):
    """max(x, 0), elementwise; any shape."""
    return _core.relu_forward(float_array(x, "x"))


def _from_output(kernel, grad_out, y):
    """An activation's backward from its OUTPUT y: checks, then the C++ kernel."""
    y = float_array(y, "y")
    grad_out = float_array(grad_out, "grad_out", y.dtype)
    if grad_out.shape != y.shape:
        raise ValueError(f"grad_out: expected the shape of y {y.shape}, got {grad_out.shape}")
    return kernel(grad_out, y)


def relu_backward(grad_out, y):
    """Gradient of relu given its OUTPUT y: grad_out where y > 0, else 0."""
    return _from_output(_core.relu_backward, grad_out, y)


def _dropout_p(p):
    p = as_float(p, "p")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p: expected a probability in [0, 1), got {p}")
    return p


def dropout(x, p=0.5, seed=None, *, return_mask=False, offset=0):
    """Inverted dropout (training mode): y = x * mask / (1 - p), each element dropped with
    probability p in [0, 1). Returns y, as torch's dropout; with ``return_mask=True``
    returns (y, mask), mask a bool array of x's shape, which :func:`dropout_backward` takes.

    The mask is a pure function of (seed, x.size): element i is kept when a 32-bit hash of
    (i, seed) is at least p * 2^32, so it is the same for any thread count, and the same
    seed gives it back (``dropout(ones, p, seed, return_mask=True)``). seed: an int in
    [0, 2^64) (draw a fresh one per call, e.g. from a numpy Generator); None draws one
    from the global generator (``pyconvnet.manual_seed``).

    offset: the hash counter of x's first element (element i uses i + offset), so x can be
    a slice of a larger array and draw the mask that array would have had there: a
    data-parallel rank holding samples s.. of a batch passes s * (elements per sample)."""
    x = float_array(x, "x")
    p = _dropout_p(p)
    seed = draw_seed() if seed is None else as_int(seed, "seed")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed: expected an int in [0, 2**64), got {seed}")
    offset = as_int(offset, "offset")
    if not 0 <= offset < 2**63:
        raise ValueError(f"offset: expected an int in [0, 2**63), got {offset}")
    y, mask = _core.dropout_forward(x, p, seed, offset)
    return (y, mask) if return_mask else y


def dropout_backward(grad_out, mask, p):
    """Gradient of :func:`dropout`: grad_out * mask / (1 - p)."""
    grad_out = float_array(grad_out, "grad_out")
    p = _dropout_p(p)
    mask = np.asarray(mask)
    if mask.dtype != np.bool_ or mask.shape != grad_out.shape:
        raise ValueError(f"mask: expected the bool mask of shape {grad_out.shape} that dropout returned, "
                         f"got {mask.dtype} {mask.shape}")
    return _core.dropout_backward(grad_out, mask, 1.0 / (1.0 - p))


def sigmoid(x):
    """1 / (1 + exp(-x)) (Kyoto Univ. exercise, eq. 2), elementwise, any shape; never overflows, NaN propagates.
    float32 flushes results below 1.21e-38 (x < -87.3) to 0."""
    return _core.sigmoid_forward(float_array(x, "x"))


def sigmoid_backward(grad_out, y):
    """Gradient of sigmoid given its OUTPUT y: grad_out * y * (1 - y) (Kyoto Univ. exercise, eq. 19)."""
    return _from_output(_core.sigmoid_backward, grad_out, y)


# ----------------------------------------------------------------- GELU, erf, hardtanh, log_softmax
def _gelu_approx(approximate):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"approximate: expected 'none' or 'tanh', got {approximate!r}")
    return approximate == "tanh"


def gelu(x, approximate="none"):
    """GELU, elementwise, any shape (torch's F.gelu): x * Phi(x) = x/2 (1 + erf(x / sqrt 2)), or with
    approximate='tanh' x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). One C++ pass; float32 within
    ~1e-7 of the exact value times |x|, the negative tail computed from erfc (no cancellation)."""
    return _core.gelu_forward(float_array(x, "x"), _gelu_approx(approximate))


def gelu_backward(grad_out, x, approximate="none"):
    """Gradient of gelu given its INPUT x: grad_out * (Phi(x) + x phi(x)) (or the tanh form's derivative)."""
    x = float_array(x, "x")
    grad_out = float_array(grad_out, "grad_out", x.dtype)
    if grad_out.shape != x.shape:
        raise ValueError(f"grad_out: expected the shape of x {x.shape}, got {grad_out.shape}")
    return _core.gelu_backward(grad_out, x, _gelu_approx(approximate))


def erf(x):
    """The error function, elementwise (float32: branch-free, max abs error ~1.2e-7; float64: libm)."""
    return _core.erf_forward(float_array(x, "x"))


def erf_backward(grad_out, x):
    """Gradient of erf given its INPUT x: grad_out * 2/sqrt(pi) * exp(-x^2)."""
    x = float_array(x, "x")
    grad_out = float_array(grad_out, "grad_out", x.dtype)
    if grad_out.shape != x.shape:
        raise ValueError(f"grad_out: expected the shape of x {x.shape}, got {grad_out.shape}")
    return _core.erf_backward(grad_out, x)


def _bounds(min_val, max_val):
    lo, hi = as_float(min_val, "min_val"), as_float(max_val, "max_val")
    if not lo <= hi:  # NaN bounds too
        raise ValueError(f"min_val/max_val: expected min_val <= max_val, got {min_val!r} and {max_val!r}")
    return lo, hi


def hardtanh(x, min_val=-1.0, max_val=1.0):
    """Clip to [min_val, max_val] (torch's F.hardtanh; relu6 = hardtanh(x, 0, 6); ONNX Clip). NaN propagates.
    Bounds may be +-inf (a one-sided clip)."""
    x = float_array(x, "x")
    lo, hi = _bounds(min_val, max_val)
    return np.clip(x, x.dtype.type(lo), x.dtype.type(hi))


def hardtanh_backward(grad_out, x, min_val=-1.0, max_val=1.0):
    """Gradient of hardtanh given its INPUT x: grad_out where min_val < x < max_val, else 0 (torch's rule:
    0 at the bounds themselves)."""
    x = float_array(x, "x")
    grad_out = float_array(grad_out, "grad_out", x.dtype)
    if grad_out.shape != x.shape:
        raise ValueError(f"grad_out: expected the shape of x {x.shape}, got {grad_out.shape}")
    lo, hi = _bounds(min_val, max_val)
    return np.where((x > lo) & (x < hi), grad_out, x.dtype.type(0))


def _axis(axis, ndim):
    axis = as_int(axis, "axis")
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis: {axis} is out of range for an array of {ndim} dimensions")
    return axis % ndim


def log_softmax(x, axis=1):
    """log(softmax(x)) over ``axis``, stably: x - max - log(sum(exp(x - max))) (torch's F.log_softmax, dim=)."""
    x = float_array(x, "x")
    axis = _axis(axis, x.ndim)
    z = x - x.max(axis=axis, keepdims=True)
    z -= np.log(np.exp(z).sum(axis=axis, keepdims=True))
    return z


def log_softmax_backward(grad_out, y, axis=1):
    """Gradient of log_softmax given its OUTPUT y: grad_out - exp(y) * sum(grad_out over axis)."""
    y = float_array(y, "y")
    grad_out = float_array(grad_out, "grad_out", y.dtype)
    if grad_out.shape != y.shape:
        raise ValueError(f"grad_out: expected the shape of y {y.shape}, got {grad_out.shape}")
    axis = _axis(axis, y.ndim)
    return grad_out - np.exp(y) * grad_out.sum(axis=axis, keepdims=True)
