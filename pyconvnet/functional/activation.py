"""Elementwise activations (relu, sigmoid) and inverted dropout."""
from __future__ import annotations

import numpy as np

from .. import _core
from .._args import as_float, as_int, float_array
from .._random import draw_seed

__all__ = ["relu", "relu_backward", "sigmoid", "sigmoid_backward", "dropout", "dropout_backward"]


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


def dropout(x, p=0.5, seed=None, *, return_mask=False):
    """Inverted dropout (training mode): y = x * mask / (1 - p), each element dropped with
    probability p in [0, 1). Returns y, as torch's dropout; with ``return_mask=True``
    returns (y, mask), mask a bool array of x's shape, which :func:`dropout_backward` takes.

    The mask is a pure function of (seed, x.size): element i is kept when a 32-bit hash of
    (i, seed) is at least p * 2^32, so it is the same for any thread count, and the same
    seed gives it back (``dropout(ones, p, seed, return_mask=True)``). seed: an int in
    [0, 2^64) (draw a fresh one per call, e.g. from a numpy Generator); None draws one
    from the global generator (``pyconvnet.manual_seed``)."""
    x = float_array(x, "x")
    p = _dropout_p(p)
    seed = draw_seed() if seed is None else as_int(seed, "seed")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed: expected an int in [0, 2**64), got {seed}")
    y, mask = _core.dropout_forward(x, p, seed)
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


