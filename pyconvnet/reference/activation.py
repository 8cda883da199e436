"""Naive activations."""
from __future__ import annotations

import numpy as np

from ._common import _float_dtype

__all__ = ["relu", "relu_backward"]


def relu(x):
    """max(x, 0) elementwise; any shape. NaN stays NaN (as torch)."""
    x = np.asarray(x)
    return np.where(x > 0, x, np.where(np.isnan(x), x, 0)).astype(_float_dtype(x))


def relu_backward(grad_out, y):
    """Gradient of relu given its output y: grad_out where y > 0, else 0."""
    y = np.asarray(y)
    return np.where(y > 0, np.asarray(grad_out), 0).astype(_float_dtype(y))
