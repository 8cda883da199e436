"""Reshaping and merging layers: Flatten, Upsample (nearest), PixelShuffle /
PixelUnshuffle (sub-pixel convolution), and the multi-input Concat and Add used
for skip connections and Stack (branches into a sequence) (they take a list of arrays;
backward returns a list); Pad2d, and
Reshape / Transpose with constant shapes (the batch dimension stays first and free)."""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from .._args import as_int, float_array
from .base import Layer

__all__ = ["Flatten", "Upsample", "PixelShuffle", "PixelUnshuffle", "Concat", "Add", "Stack", "Pad2d", "Reshape", "Transpose"]


def _grad(g, shape, name="grad_y"):
    g = float_array(g, name)
    if g.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)} (that of the forward output), got {g.shape}")
    return g


def _nchw(x, name="x"):
    if x.ndim != 4:
        raise ValueError(f"{name}: expected an (N, C, H, W) array, got shape {x.shape}")
    return x


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...) (dimensions from start_dim on are merged)."""

    def __init__(self, start_dim=1):
        super().__init__()
        self.start_dim = as_int(start_dim, "start_dim")
        if self.start_dim < 0:
            raise ValueError(f"start_dim: expected a non-negative int, got {self.start_dim}")

    def _args(self):
        return dict(start_dim=self.start_dim)

    def forward(self, x, training=False):
        x = self._input(x)
        if x.ndim <= self.start_dim:
            raise ValueError(f"x: expected more than {self.start_dim} dimensions (start_dim), got shape {x.shape}")
        self._cache = x.shape
        return x.reshape(x.shape[:self.start_dim] + (-1,))

    def backward(self, grad_y):
        shape = self._saved()
        g = float_array(grad_y, "grad_y")
        if g.size != math.prod(shape):
            raise ValueError(f"grad_y: expected {math.prod(shape)} values to reshape to {shape}, got shape {g.shape}")
        return g.reshape(shape)


def _scale_arg(scale_factor):
    vals = list(scale_factor) if isinstance(scale_factor, (tuple, list)) else [scale_factor] * 2
    if len(vals) != 2:
        raise ValueError(f"scale_factor: expected a number or a pair, got {scale_factor!r}")
    out = []
    for v in vals:
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"scale_factor: expected positive numbers, got {scale_factor!r}")
        if not v > 0 or not math.isfinite(v):
            raise ValueError(f"scale_factor: expected positive numbers, got {scale_factor!r}")
        out.append(int(v) if float(v).is_integer() else float(v))
    return tuple(out)


def _segment_sum(g, src, n_in, axis):
    """out[..., j, ...] = sum of g[..., i, ...] over i with src[i] == j (src non-decreasing)."""
    uniq, first = np.unique(src, return_index=True)
    sums = np.add.reduceat(g, first, axis=axis)
    if len(uniq) == n_in:
        return sums
    shape = list(g.shape)
    shape[axis] = n_in
    out = np.zeros(shape, g.dtype)
    idx = [slice(None)] * g.ndim
    idx[axis] = uniq
    out[tuple(idx)] = sums
    return out


class Upsample(Layer):
    """Nearest-neighbour upsampling of x (N, C, H, W); give ``size`` (OH, OW) or ``scale_factor``.

    Output pixel (i, j) copies input pixel (floor(i * H / OH), floor(j * W / OW)) with
    size=, or (floor(i / s), floor(j / s)) with scale_factor=s (OH = floor(H * s)):
    torch's mode='nearest', in exact arithmetic. Integer factors take a fast path;
    backward sums the gradient of the copies."""

    def __init__(self, size=None, scale_factor=None, mode="nearest"):
        super().__init__()
        if (size is None) == (scale_factor is None):
            raise ValueError("size/scale_factor: give exactly one of them")
        if mode != "nearest":
            raise ValueError(f"mode: only 'nearest' is supported, got {mode!r}")
        self.mode = mode
        self.size = None
        self.scale_factor = None
        if size is not None:
            vals = list(size) if isinstance(size, (tuple, list)) else [size] * 2
            if len(vals) != 2:
                raise ValueError(f"size: expected an int or a pair, got {size!r}")
            self.size = tuple(as_int(v, "size") for v in vals)
            if min(self.size) < 1:
                raise ValueError(f"size: expected positive sizes, got {size!r}")
        else:
            self.scale_factor = _scale_arg(scale_factor)

    def _args(self):
        return dict(size=self.size, scale_factor=self.scale_factor, mode=self.mode)

    def _plan(self, h, w):
        """Per axis: ('int', factor) or ('idx', source indices)."""
        plan = []
        for i, n in enumerate((h, w)):
            if self.size is not None:
                out = self.size[i]
                if out % n == 0:
                    plan.append(("int", out // n))
                else:
                    plan.append(("idx", (np.arange(out) * n) // out))
            else:
                s = self.scale_factor[i]
                if isinstance(s, int):
                    plan.append(("int", s))
                else:
                    out = int(math.floor(n * s))
                    if out < 1:
                        raise ValueError(f"scale_factor: {s} gives an empty output for an input of size {n}")
                    plan.append(("idx", np.minimum(np.floor(np.arange(out) / s).astype(np.int64), n - 1)))
        return plan

    def forward(self, x, training=False):
        x = _nchw(self._input(x))
        n, c, h, w = x.shape
        plan = self._plan(h, w)
        self._cache = (x.shape, plan)
        if plan[0][0] == "int" and plan[1][0] == "int":
            sh, sw = plan[0][1], plan[1][1]
            y = np.broadcast_to(x[:, :, :, None, :, None], (n, c, h, sh, w, sw))
            return y.reshape(n, c, h * sh, w * sw)
        ih = plan[0][1] if plan[0][0] == "idx" else np.arange(h * plan[0][1]) // plan[0][1]
        iw = plan[1][1] if plan[1][0] == "idx" else np.arange(w * plan[1][1]) // plan[1][1]
        return x[:, :, ih[:, None], iw[None, :]]

    def backward(self, grad_y):
        shape, plan = self._saved()
        n, c, h, w = shape
        out = []
        for (kind, v), size in zip(plan, (h, w)):
            out.append(size * v if kind == "int" else len(v))
        g = _grad(grad_y, (n, c, out[0], out[1]))
        if plan[0][0] == "int" and plan[1][0] == "int":
            return g.reshape(n, c, h, plan[0][1], w, plan[1][1]).sum(axis=(3, 5))
        for axis, ((kind, v), size) in zip((2, 3), zip(plan, (h, w))):
            if kind == "int":
                s = list(g.shape)
                g = g.reshape(s[:axis] + [size, v] + s[axis + 1:]).sum(axis=axis + 1)
            else:
                g = _segment_sum(g, v, size, axis)
        return g


def _factor(r, name="upscale_factor"):
    r = as_int(r, name)
    if r < 1:
        raise ValueError(f"{name}: expected a positive int, got {r}")
    return r


def _pixel_shuffle(x, r):
    n, crr, h, w = x.shape
    c = crr // (r * r)
    return x.reshape(n, c, r, r, h, w).transpose(0, 1, 4, 2, 5, 3).reshape(n, c, h * r, w * r)


def _pixel_unshuffle(x, r):
    n, c, hr, wr = x.shape
    h, w = hr // r, wr // r
    return x.reshape(n, c, h, r, w, r).transpose(0, 1, 3, 5, 2, 4).reshape(n, c * r * r, h, w)


class PixelShuffle(Layer):
    """Sub-pixel convolution's rearrangement: (N, C*r^2, H, W) -> (N, C, H*r, W*r),
    y[n, c, h*r + i, w*r + j] = x[n, c*r^2 + i*r + j, h, w] (torch's order)."""

    def __init__(self, upscale_factor):
        super().__init__()
        self.upscale_factor = _factor(upscale_factor)

    def _args(self):
        return dict(upscale_factor=self.upscale_factor)

    def forward(self, x, training=False):
        x = _nchw(self._input(x))
        r = self.upscale_factor
        if x.shape[1] % (r * r):
            raise ValueError(f"x: the {x.shape[1]} channels must be divisible by upscale_factor^2 = {r * r}, "
                             f"got shape {x.shape}")
        self._cache = x.shape
        return _pixel_shuffle(x, r)

    def backward(self, grad_y):
        n, c, h, w = self._saved()
        r = self.upscale_factor
        return _pixel_unshuffle(_grad(grad_y, (n, c // (r * r), h * r, w * r)), r)


class PixelUnshuffle(Layer):
    """The inverse of PixelShuffle: (N, C, H*r, W*r) -> (N, C*r^2, H, W)."""

    def __init__(self, downscale_factor):
        super().__init__()
        self.downscale_factor = _factor(downscale_factor, "downscale_factor")

    def _args(self):
        return dict(downscale_factor=self.downscale_factor)

    def forward(self, x, training=False):
        x = _nchw(self._input(x))
        r = self.downscale_factor
        if x.shape[2] % r or x.shape[3] % r:
            raise ValueError(f"x: height and width must be divisible by downscale_factor = {r}, got shape {x.shape}")
        self._cache = x.shape
        return _pixel_unshuffle(x, r)

    def backward(self, grad_y):
        n, c, h, w = self._saved()
        r = self.downscale_factor
        return _pixel_shuffle(_grad(grad_y, (n, c * r * r, h // r, w // r)), r)


def _inputs(xs, layer, min_count=1):
    if isinstance(xs, np.ndarray) or not isinstance(xs, (list, tuple)):
        raise TypeError(f"xs: {layer} takes a list of arrays, got {type(xs).__name__}")
    if len(xs) < min_count:
        raise ValueError(f"xs: {layer} needs at least {min_count} input(s), got {len(xs)}")
    xs = [float_array(x, f"xs[{i}]") for i, x in enumerate(xs)]
    for i, x in enumerate(xs[1:], 1):
        if x.dtype != xs[0].dtype:
            raise TypeError(f"xs[{i}]: expected dtype {xs[0].dtype} (that of xs[0]), got {x.dtype}")
    return xs


class Concat(Layer):
    """Concatenates a list of arrays along ``axis`` (default 1, channels): U-Net style skips."""

    multi_input = True

    def __init__(self, axis=1):
        super().__init__()
        self.axis = as_int(axis, "axis")

    def _args(self):
        return dict(axis=self.axis)

    def forward(self, xs, training=False):
        xs = _inputs(xs, "Concat")
        nd = xs[0].ndim
        if not -nd <= self.axis < nd:
            raise ValueError(f"axis: {self.axis} is out of range for inputs of shape {xs[0].shape}")
        ax = self.axis % nd
        for i, x in enumerate(xs[1:], 1):
            if x.ndim != nd or x.shape[:ax] + x.shape[ax + 1:] != xs[0].shape[:ax] + xs[0].shape[ax + 1:]:
                raise ValueError(f"xs[{i}]: shape {x.shape} does not match xs[0] {xs[0].shape} outside axis {ax}")
        sizes = [x.shape[ax] for x in xs]
        y = np.concatenate(xs, axis=ax)
        self._cache = (ax, sizes, y.shape)
        return y

    def backward(self, grad_y):
        ax, sizes, shape = self._saved()
        g = _grad(grad_y, shape)
        return np.split(g, np.cumsum(sizes)[:-1], axis=ax)


class Stack(Layer):
    """Stacks a list of same-shape arrays along a new ``axis`` (default 1): K branch outputs
    (N, F) become one sequence (N, K, F), e.g. CNNs feeding an LSTM (np.stack / torch.stack)."""

    multi_input = True

    def __init__(self, axis=1):
        super().__init__()
        self.axis = as_int(axis, "axis")

    def _args(self):
        return dict(axis=self.axis)

    def forward(self, xs, training=False):
        xs = _inputs(xs, "Stack")
        nd = xs[0].ndim + 1
        if not -nd <= self.axis < nd:
            raise ValueError(f"axis: {self.axis} is out of range for the stack of inputs of shape {xs[0].shape}")
        for i, x in enumerate(xs[1:], 1):
            if x.shape != xs[0].shape:
                raise ValueError(f"xs[{i}]: expected shape {xs[0].shape} (that of xs[0]), got {x.shape}")
        ax = self.axis % nd
        y = np.stack(xs, axis=ax)
        self._cache = (ax, y.shape)
        return y

    def backward(self, grad_y):
        ax, shape = self._saved()
        g = _grad(grad_y, shape)
        return [np.take(g, k, axis=ax) for k in range(shape[ax])]


class Add(Layer):
    """Element-wise sum of a list of same-shape arrays (residual skips); backward hands
    the same gradient to every input."""

    multi_input = True

    def forward(self, xs, training=False):
        xs = _inputs(xs, "Add")
        for i, x in enumerate(xs[1:], 1):
            if x.shape != xs[0].shape:
                raise ValueError(f"xs[{i}]: expected shape {xs[0].shape} (that of xs[0]; no broadcasting), "
                                 f"got {x.shape}")
        y = xs[0].copy() if len(xs) == 1 else np.add(xs[0], xs[1])
        for x in xs[2:]:
            y += x
        self._cache = (len(xs), y.shape)
        return y

    def backward(self, grad_y):
        k, shape = self._saved()
        g = _grad(grad_y, shape)
        return [g] * k


def _pad2d_arg(padding):
    vals = list(padding) if isinstance(padding, (tuple, list)) else [padding] * 4
    if len(vals) == 2:  # (left and right, top and bottom), as functional.pad
        vals = [vals[0], vals[0], vals[1], vals[1]]
    if len(vals) != 4:
        raise ValueError(f"padding: expected an int or (left, right, top, bottom), got {padding!r}")
    return tuple(as_int(v, "padding") for v in vals)


class Pad2d(Layer):
    """Pads the last two dimensions: ``padding`` an int or (left, right, top, bottom) as torch's
    ZeroPad2d / ReflectionPad2d / ReplicationPad2d; mode 'constant' (``value``; negative pads crop),
    'reflect' or 'replicate'. Backward adds the copies' gradients back (functional.pad_backward)."""

    def __init__(self, padding, mode="constant", value=0.0):
        super().__init__()
        self.padding = _pad2d_arg(padding)
        if mode not in F.PAD_MODES:
            raise ValueError(f"mode: expected one of {', '.join(F.PAD_MODES)}, got {mode!r}")
        if mode != "constant" and min(self.padding) < 0:
            raise ValueError(f"padding: negative pads (cropping) only with mode='constant', got {self.padding}")
        self.mode, self.value = mode, float(value)

    def _args(self):
        return dict(padding=self.padding, mode=self.mode, value=self.value)

    def forward(self, x, training=False):
        x = self._input(x)
        self._cache = x.shape
        return F.pad(x, self.padding, self.mode, self.value)

    def backward(self, grad_y):
        return F.pad_backward(grad_y, self._saved(), self.padding, self.mode)


def _dims(values, name):
    if not isinstance(values, (tuple, list)):
        raise TypeError(f"{name}: expected a tuple of ints, got {values!r}")
    return tuple(as_int(v, name) for v in values)


class Reshape(Layer):
    """(N, ...) -> (N, *shape): the batch dimension is kept, ``shape`` gives the rest (one entry may
    be -1: inferred). torch's ``x.view(x.size(0), *shape)``."""

    def __init__(self, shape):
        super().__init__()
        self.shape = _dims(shape, "shape")
        if sum(v == -1 for v in self.shape) > 1 or any(v < -1 for v in self.shape):
            raise ValueError(f"shape: expected non-negative sizes and at most one -1, got {shape!r}")

    def _args(self):
        return dict(shape=self.shape)

    def forward(self, x, training=False):
        x = self._input(x)
        if x.ndim < 1:
            raise ValueError("x: expected a batch (N, ...), got a scalar")
        known = math.prod(v for v in self.shape if v != -1)
        rest = math.prod(x.shape[1:])
        if (-1 in self.shape and (known == 0 or rest % known)) or (-1 not in self.shape and known != rest):
            raise ValueError(f"x: cannot reshape (N, {', '.join(map(str, x.shape[1:]))}) to (N, "
                             f"{', '.join(map(str, self.shape))}) (shape)")
        self._cache = x.shape
        return x.reshape((x.shape[0],) + self.shape)

    def backward(self, grad_y):
        shape = self._saved()
        g = float_array(grad_y, "grad_y")
        if g.size != math.prod(shape):
            raise ValueError(f"grad_y: expected {math.prod(shape)} values to reshape to {shape}, got shape {g.shape}")
        return g.reshape(shape)


class Transpose(Layer):
    """Permutes the dimensions: y = x.transpose(dims); dims[0] must be 0 (the batch stays first).
    The output is a view made contiguous (the next kernels want C order)."""

    def __init__(self, dims):
        super().__init__()
        self.dims = _dims(dims, "dims")
        if sorted(self.dims) != list(range(len(self.dims))) or not self.dims or self.dims[0] != 0:
            raise ValueError(f"dims: expected a permutation of 0..{len(self.dims) - 1} starting with 0 (the batch), "
                             f"got {dims!r}")

    def _args(self):
        return dict(dims=self.dims)

    def forward(self, x, training=False):
        x = self._input(x)
        if x.ndim != len(self.dims):
            raise ValueError(f"x: expected {len(self.dims)} dimensions (dims {self.dims}), got shape {x.shape}")
        self._cache = x.shape
        return np.ascontiguousarray(x.transpose(self.dims))

    def backward(self, grad_y):
        shape = self._saved()
        g = _grad(grad_y, tuple(shape[d] for d in self.dims))
        return np.ascontiguousarray(g.transpose(np.argsort(self.dims)))
