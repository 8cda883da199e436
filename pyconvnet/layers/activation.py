"""Element-wise activations (ReLU ... GELU, Hardtanh / ReLU6), Softmax / LogSoftmax and Dropout (no
parameters; any float dtype)."""
from __future__ import annotations

import numpy as np

from .. import functional as F

from .._args import as_int
from .. import init as _init
from .base import Layer

__all__ = ["ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softmax", "Dropout", "Identity", "GELU", "Erf", "Hardtanh", "ReLU6",
           "LogSoftmax"]


def _same_shape(g, shape, name="grad_y"):
    g = np.asarray(g)
    if g.shape != shape:
        raise ValueError(f"{name}: expected shape {shape} (that of the forward output), got {g.shape}")
    return g


class Identity(Layer):
    """y = x (a placeholder node, e.g. to name a model input inside a Graph)."""

    def forward(self, x, training=False):
        x = self._input(x)
        self._cache = x.shape
        return x

    def backward(self, grad_y):
        return _same_shape(grad_y, self._saved())


class ReLU(Layer):
    """max(x, 0); derivative 1 for x > 0 and 0 for x <= 0 (Kyoto Univ. exercise, eqs. 24-25)."""

    def forward(self, x, training=False):
        x = self._input(x)
        y = F.relu(x)
        self._cache = y
        return y

    def backward(self, grad_y):
        y = self._saved()
        return F.relu_backward(_same_shape(grad_y, y.shape), y)


class LeakyReLU(Layer):
    """x for x > 0, negative_slope * x otherwise."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def _args(self):
        return dict(negative_slope=self.negative_slope)

    def forward(self, x, training=False):
        x = self._input(x)
        self._cache = x
        return np.where(x > 0, x, x * x.dtype.type(self.negative_slope))

    def backward(self, grad_y):
        x = self._saved()
        g = _same_shape(grad_y, x.shape)
        return np.where(x > 0, g, g * x.dtype.type(self.negative_slope)).astype(x.dtype, copy=False)


class Sigmoid(Layer):
    """1 / (1 + exp(-x)) (Kyoto Univ. exercise, eq. 2), computed without overflow; derivative (1 - y) y (eq. 19).
    One C++ pass each way (functional.sigmoid)."""

    def forward(self, x, training=False):
        y = F.sigmoid(self._input(x))
        self._cache = y
        return y

    def backward(self, grad_y):
        y = self._saved()
        return F.sigmoid_backward(_same_shape(grad_y, y.shape), y)


class Tanh(Layer):
    """tanh(x); derivative 1 - y^2."""

    def forward(self, x, training=False):
        x = self._input(x)
        y = np.tanh(x)
        self._cache = y
        return y

    def backward(self, grad_y):
        y = self._saved()
        g = _same_shape(grad_y, y.shape)
        out = np.square(y)
        np.subtract(1, out, out=out)
        out *= g
        return out


def softmax(x, axis=1):
    """Stable softmax: exp(x - max) / sum(exp(x - max)) (Kyoto Univ. exercise, eqs. 5-6)."""
    z = x - x.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z


class Softmax(Layer):
    """Softmax over ``axis`` (default 1: the class axis of (N, C) and (N, C, H, W)).

    For training a classifier use losses.SoftmaxCrossEntropy on the logits instead:
    it fuses the two and is exact for extreme logits."""

    def __init__(self, axis=1):
        super().__init__()
        self.axis = as_int(axis, "axis")

    def _args(self):
        return dict(axis=self.axis)

    def forward(self, x, training=False):
        x = self._input(x)
        if not -x.ndim <= self.axis < x.ndim:
            raise ValueError(f"x: axis {self.axis} is out of range for shape {x.shape}")
        y = softmax(x, self.axis)
        self._cache = y
        return y

    def backward(self, grad_y):
        y = self._saved()
        g = _same_shape(grad_y, y.shape)
        gx = g * y
        s = gx.sum(axis=self.axis, keepdims=True)
        s = s * y
        gx -= s
        return gx


class Dropout(Layer):
    """Inverted dropout: at train time each value is zeroed with probability p and the
    survivors are scaled by 1/(1-p); at test time it is the identity (as torch).

    The Kyoto Univ. exercise (§5.2) describes the non-inverted variant: no scaling while training and
    the output multiplied by (1-p) at test time. The two are equivalent up to that
    constant scale (the next layer's weights absorb it); the inverted form keeps
    inference free. p=1 drops everything (output zeros).

    The mask comes from this layer's own generator (``rng``: Generator or int seed,
    or ``seed``): each training forward draws one 64-bit seed from it for the C++
    kernel's counter-based mask (:func:`pyconvnet.functional.dropout`), so two layers
    built with the same seed draw the same masks, on any number of threads.

    ``sample_offset`` (default 0): the index, in the global batch, of this call's first
    sample. Data-parallel training (:mod:`pyconvnet.distributed`) sets it on each rank so
    that sample s of a batch gets the mask it would get in one process, whatever the
    number of ranks."""

    sample_offset = 0

    def __init__(self, p=0.5, *, rng=None, seed=None):
        super().__init__()
        p = float(p)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p: expected a probability in [0, 1], got {p}")
        self.p = p
        self._rng = _init.as_rng(rng, seed)
        if seed is None and rng is not None and not isinstance(rng, np.random.Generator):
            seed = rng
        self._seed = None if seed is None else int(seed)

    def _args(self):
        return dict(p=self.p, seed=self._seed)

    def set_rng(self, rng):
        """Draws the following masks from ``rng`` (Generator, shared as is, or int seed)."""
        self._rng = _init.as_rng(rng)
        return self

    def forward(self, x, training=False):
        x = self._input(x)
        if not training or self.p == 0.0:
            self._cache = (None, x.shape)
            return x
        if self.p == 1.0:
            mask = np.zeros(x.shape, bool)
            self._cache = (mask, x.shape)
            return np.zeros_like(x)
        # one draw from our generator seeds the C++ counter-based mask of this call
        per_sample = x.size // x.shape[0] if x.ndim and x.shape[0] else 0
        y, mask = F.dropout(x, self.p, int(self._rng.integers(0, 2**64, dtype=np.uint64)), return_mask=True,
                            offset=int(self.sample_offset) * per_sample)
        self._cache = (mask, x.shape)
        return y

    def backward(self, grad_y):
        mask, shape = self._saved()
        g = _same_shape(grad_y, shape)
        if mask is None:
            return g
        if self.p == 1.0:
            return np.zeros_like(g)
        return F.dropout_backward(g, mask, self.p)


# ------------------------------------------------------------------ GELU, Erf, Hardtanh / ReLU6, LogSoftmax
class GELU(Layer):
    """x * Phi(x) (approximate='none') or torch's tanh approximation (approximate='tanh'); one C++ pass
    each way (functional.gelu), the backward from the saved input."""

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate: expected 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def _args(self):
        return dict(approximate=self.approximate)

    def forward(self, x, training=False):
        x = self._input(x)
        self._cache = x
        return F.gelu(x, self.approximate)

    def backward(self, grad_y):
        x = self._saved()
        return F.gelu_backward(_same_shape(grad_y, x.shape), x, self.approximate)


class Erf(Layer):
    """erf(x) elementwise (ONNX Erf); derivative 2/sqrt(pi) exp(-x^2)."""

    def forward(self, x, training=False):
        x = self._input(x)
        self._cache = x
        return F.erf(x)

    def backward(self, grad_y):
        x = self._saved()
        return F.erf_backward(_same_shape(grad_y, x.shape), x)


class Hardtanh(Layer):
    """Clips x to [min_val, max_val] (ONNX Clip; +-inf for a one-sided clip); gradient 1 strictly inside."""

    def __init__(self, min_val=-1.0, max_val=1.0):
        super().__init__()
        self.min_val, self.max_val = float(min_val), float(max_val)
        if not self.min_val <= self.max_val:
            raise ValueError(f"min_val/max_val: expected min_val <= max_val, got {min_val!r} and {max_val!r}")

    def _args(self):
        return dict(min_val=self.min_val, max_val=self.max_val)

    def forward(self, x, training=False):
        x = self._input(x)
        self._cache = x
        return F.hardtanh(x, self.min_val, self.max_val)

    def backward(self, grad_y):
        x = self._saved()
        return F.hardtanh_backward(_same_shape(grad_y, x.shape), x, self.min_val, self.max_val)


class ReLU6(Hardtanh):
    """min(max(x, 0), 6) (MobileNet's activation)."""

    def __init__(self):
        super().__init__(0.0, 6.0)

    def _args(self):
        return {}


class LogSoftmax(Layer):
    """log(softmax(x)) over ``axis`` (default 1), computed stably; backward from the output."""

    def __init__(self, axis=1):
        super().__init__()
        self.axis = as_int(axis, "axis")

    def _args(self):
        return dict(axis=self.axis)

    def forward(self, x, training=False):
        x = self._input(x)
        if not -x.ndim <= self.axis < x.ndim:
            raise ValueError(f"x: axis {self.axis} is out of range for shape {x.shape}")
        y = F.log_softmax(x, self.axis)
        self._cache = y
        return y

    def backward(self, grad_y):
        y = self._saved()
        return F.log_softmax_backward(_same_shape(grad_y, y.shape), y, self.axis)
