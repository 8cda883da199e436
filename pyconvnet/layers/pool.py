"""Pooling layers: MaxPool2d (routes the gradient through the saved argmax; first
maximum wins on ties), AvgPool2d (torch's divisor rules) and the adaptive / global pools."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .._args import pair
from .base import Layer

__all__ = ["MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "GlobalAvgPool2d", "GlobalMaxPool2d"]


def _pool_geometry(kernel_size, stride, padding):
    k = pair(kernel_size, "kernel_size", 1)
    s = k if stride is None else pair(stride, "stride", 1)
    p = pair(padding, "padding", 0)
    if 2 * p[0] > k[0] or 2 * p[1] > k[1]:
        raise ValueError(f"padding: should be at most half of kernel_size, got padding={p}, kernel_size={k}")
    return k, s, p


def _bool(v, name):
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {v!r}")
    return bool(v)


class MaxPool2d(Layer):
    """Max pooling, x (N, C, H, W) -> (N, C, OH, OW); stride defaults to kernel_size
    (Kyoto Univ. exercise, eqs. 63-64)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride, self.padding = _pool_geometry(kernel_size, stride, padding)
        self.dilation = pair(dilation, "dilation", 1)
        self.ceil_mode = _bool(ceil_mode, "ceil_mode")

    def _args(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding, dilation=self.dilation,
                    ceil_mode=self.ceil_mode)

    def forward(self, x, training=False):
        x = self._input(x)
        y, idx = F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode,
                              return_indices=True)
        self._cache = (idx, x.shape)
        return y

    def backward(self, grad_y):
        idx, shape = self._saved()
        return F.max_pool2d_backward(grad_y, idx, shape)


class AvgPool2d(Layer):
    """Average pooling, x (N, C, H, W) -> (N, C, OH, OW); stride defaults to kernel_size."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
        super().__init__()
        self.kernel_size, self.stride, self.padding = _pool_geometry(kernel_size, stride, padding)
        self.ceil_mode = _bool(ceil_mode, "ceil_mode")
        self.count_include_pad = _bool(count_include_pad, "count_include_pad")

    def _args(self):
        return dict(kernel_size=self.kernel_size, stride=self.stride, padding=self.padding, ceil_mode=self.ceil_mode,
                    count_include_pad=self.count_include_pad)

    def _geom(self):
        return (self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad)

    def forward(self, x, training=False):
        x = self._input(x)
        self._cache = x.shape
        return F.avg_pool2d(x, *self._geom())

    def backward(self, grad_y):
        shape = self._saved()
        return F.avg_pool2d_backward(grad_y, shape, *self._geom())


def _output_size(output_size):
    vals = list(output_size) if isinstance(output_size, (tuple, list)) else [output_size] * 2
    if len(vals) != 2:
        raise ValueError(f"output_size: expected an int or a pair, got {output_size!r}")
    out = []
    for v in vals:
        if v is None:
            out.append(None)
            continue
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"output_size: expected positive ints (or None: keep that size), got {output_size!r}")
        out.append(int(v))
    return tuple(out)


class AdaptiveAvgPool2d(Layer):
    """Mean over torch's adaptive windows: x (N, C, H, W) -> (N, C, *output_size)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = _output_size(output_size)

    def _args(self):
        return dict(output_size=self.output_size)

    def forward(self, x, training=False):
        x = self._input(x)
        self._cache = x.shape
        return F.adaptive_avg_pool2d(x, self.output_size)

    def backward(self, grad_y):
        return F.adaptive_avg_pool2d_backward(grad_y, self._saved())


class AdaptiveMaxPool2d(Layer):
    """Max over torch's adaptive windows (first maximum wins, as MaxPool2d): x (N, C, H, W) -> (N, C, *output_size)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = _output_size(output_size)

    def _args(self):
        return dict(output_size=self.output_size)

    def forward(self, x, training=False):
        x = self._input(x)
        y, idx = F.adaptive_max_pool2d(x, self.output_size, return_indices=True)
        self._cache = (idx, x.shape)
        return y

    def backward(self, grad_y):
        idx, shape = self._saved()
        return F.adaptive_max_pool2d_backward(grad_y, idx, shape)


class GlobalAvgPool2d(AdaptiveAvgPool2d):
    """Mean over each plane: x (N, C, H, W) -> (N, C, 1, 1) (ONNX GlobalAveragePool)."""

    def __init__(self):
        super().__init__(1)

    def _args(self):
        return {}


class GlobalMaxPool2d(AdaptiveMaxPool2d):
    """Max over each plane: x (N, C, H, W) -> (N, C, 1, 1) (ONNX GlobalMaxPool)."""

    def __init__(self):
        super().__init__(1)

    def _args(self):
        return {}
