"""Element-wise arithmetic with NumPy broadcasting: ``ConstantArith`` (x op c with a constant
array held as a buffer: ONNX Add / Sub / Mul / Div / Pow by a constant, a normalisation's
mean and std) and ``Elementwise`` (two tensors, e.g. x * sigmoid(x) or a squeeze-excitation
gate). The batch dimension is never broadcast: a constant has size 1 there (or fewer dims)."""
from __future__ import annotations

import numpy as np

from .._args import float_array, float_dtype
from .base import Layer
from .shape import _inputs

__all__ = ["ConstantArith", "Elementwise"]

OPS = ("add", "sub", "mul", "div", "pow")


def _unbroadcast(g, shape):
    """Sums g over the axes that broadcasting expanded to reach g.shape from ``shape``."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    g = g.sum(axis=tuple(range(lead))) if lead else g
    axes = tuple(i for i, n in enumerate(shape) if n == 1 and g.shape[i] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


class ConstantArith(Layer):
    """y = x op c (or c op x with ``reverse=True``), op in add, sub, mul, div, pow; ``constant`` an
    array broadcast against x (buffer 'constant', float, converted with the layer). Give the
    values (``constant``) or only their ``shape`` (zeros; load_state_dict fills them)."""

    def __init__(self, op, constant=None, *, shape=None, reverse=False, dtype=np.float32):
        super().__init__()
        if op not in OPS:
            raise ValueError(f"op: expected one of {', '.join(OPS)}, got {op!r}")
        if not isinstance(reverse, (bool, np.bool_)):
            raise TypeError(f"reverse: expected a bool, got {reverse!r}")
        self.op, self.reverse = op, bool(reverse)
        self.dtype = float_dtype(dtype)
        if constant is None:
            if shape is None:
                raise ValueError("constant/shape: give the constant (an array) or its shape")
            c = np.zeros(tuple(int(v) for v in shape), self.dtype)
        else:
            c = np.asarray(constant)
            if c.dtype.kind not in "fiub":
                raise TypeError(f"constant: expected a numeric array, got dtype {c.dtype}")
            c = np.array(c, self.dtype)
        self._buffers["constant"] = c

    @property
    def constant(self):
        return self._buffers["constant"]

    def _args(self):
        return dict(op=self.op, shape=list(self.constant.shape), reverse=self.reverse, dtype=self.dtype.name)

    def _check(self, x):
        c = self.constant
        if c.ndim > x.ndim or (c.ndim == x.ndim and c.ndim and c.shape[0] != 1):
            raise ValueError(f"x: the constant of shape {c.shape} would broadcast over the batch of x {x.shape}")
        try:
            out = np.broadcast_shapes(x.shape, c.shape)
        except ValueError:
            raise ValueError(f"x: shape {x.shape} does not broadcast with the constant's {c.shape}") from None
        if out != x.shape:
            raise ValueError(f"x: the constant of shape {c.shape} would enlarge x {x.shape} to {out}")

    def forward(self, x, training=False):
        x = self._input(x)
        self._check(x)
        c = self.constant
        a, b = (c, x) if self.reverse else (x, c)
        y = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide, "pow": np.power}[self.op](a, b)
        self._cache = (x, y) if self.op in ("div", "pow") else (x, None)
        return y

    def backward(self, grad_y):
        x, y = self._saved()
        g = float_array(grad_y, "grad_y", x.dtype)
        if g.shape != x.shape:
            raise ValueError(f"grad_y: expected shape {x.shape} (that of the forward output), got {g.shape}")
        c, op = self.constant, self.op
        if op == "add":
            return g
        if op == "sub":
            return -g if self.reverse else g
        if op == "mul":
            return g * c
        if op == "div":
            return -g * y / x if self.reverse else g / c  # d(c/x)/dx = -c/x^2 = -y/x
        if self.reverse:  # c ** x
            return g * y * np.log(c)
        return g * c * np.power(x, c - 1)


class Elementwise(Layer):
    """y = a op b for two tensors with NumPy broadcasting (op in add, sub, mul, div); backward sums
    each gradient over the axes its input was broadcast along. Multi-input: forward([a, b])."""

    multi_input = True

    def __init__(self, op):
        super().__init__()
        if op not in OPS[:4]:
            raise ValueError(f"op: expected one of {', '.join(OPS[:4])}, got {op!r}")
        self.op = op

    def _args(self):
        return dict(op=self.op)

    def forward(self, xs, training=False):
        xs = _inputs(xs, f"Elementwise({self.op!r})", 2)
        if len(xs) != 2:
            raise ValueError(f"xs: Elementwise takes exactly two inputs, got {len(xs)}")
        a, b = xs
        try:
            out = np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(f"xs: shapes {a.shape} and {b.shape} do not broadcast") from None
        if a.ndim and b.ndim and a.ndim == b.ndim and a.shape[0] != b.shape[0]:
            raise ValueError(f"xs: the batch sizes differ ({a.shape} and {b.shape})")
        y = {"add": np.add, "sub": np.subtract, "mul": np.multiply, "div": np.divide}[self.op](a, b)
        self._cache = (a, b, out)
        return y

    def backward(self, grad_y):
        a, b, out = self._saved()
        g = float_array(grad_y, "grad_y", a.dtype)
        if g.shape != out:
            raise ValueError(f"grad_y: expected shape {out} (that of the forward output), got {g.shape}")
        if self.op == "add":
            ga, gb = g, g
        elif self.op == "sub":
            ga, gb = g, -g
        elif self.op == "mul":
            ga, gb = g * b, g * a
        else:
            ga = g / b
            gb = -g * a / (b * b)
        return [np.ascontiguousarray(_unbroadcast(ga, a.shape)), np.ascontiguousarray(_unbroadcast(gb, b.shape))]
