"""Layers with weights: Linear, Conv2d (group / depthwise / pointwise are arguments),
ConvTranspose2d. Each forward/backward is one call into pyconvnet.functional."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .._args import flag, pair, positive_int
from .base import ParamLayer

__all__ = ["Linear", "Conv2d", "ConvTranspose2d"]


class Linear(ParamLayer):
    """y = x @ weight.T + bias. x (..., in_features) -> (..., out_features).

    weight (out_features, in_features), bias (out_features,). Default init: the Kyoto Univ. exercise's
    N(0, 1/in_features) for the weight, zeros for the bias (the Kyoto Univ. exercise also draws the
    bias from the normal: pass bias_init='normal_fan_in' for that)."""

    def __init__(self, in_features, out_features, bias=True, *, init=None, bias_init=None, rng=None, seed=None,
                 dtype=np.float32):
        super().__init__(dtype, init, bias_init, rng, seed)
        self.in_features = positive_int(in_features, "in_features")
        self.out_features = positive_int(out_features, "out_features")
        self.bias = flag(bias, "bias")
        self._make((self.out_features, self.in_features), self.out_features if self.bias else 0,
                   self.in_features, self.out_features)

    def _args(self):
        return dict(in_features=self.in_features, out_features=self.out_features, bias=self.bias,
                    **self._init_args())

    def forward(self, x, training=False):
        x = self._input(x)
        self._cache = x
        return F.linear(x, self._params["weight"], self._params.get("bias"))

    def backward(self, grad_y):
        x = self._saved()
        # the kernels write straight into our gradient buffers (the optimizer holds them)
        gx, _, _ = F.linear_backward(grad_y, x, self._params["weight"], need_grad_x=self.need_input_grad,
                                     grad_weight_out=self._grads["weight"], grad_bias_out=self._grads.get("bias"))
        return gx


def _conv_padding_arg(padding, stride):
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise ValueError(f"padding: expected an int, a pair, 'valid' or 'same', got {padding!r}")
        if padding == "same" and stride != (1, 1):
            raise ValueError(f"padding: 'same' needs stride 1, got stride={stride}")
        return padding
    if isinstance(padding, (tuple, list)) and len(padding) == 4:  # (top, bottom, left, right)
        return tuple(pair((v, v), "padding", 0)[0] for v in padding)
    return pair(padding, "padding", 0)


class Conv2d(ParamLayer):
    """2-D convolution (cross-correlation). x (N, C_in, H, W) -> (N, C_out, OH, OW).

    weight (C_out, C_in/groups, kh, kw), bias (C_out,). padding: int, pair, 'valid',
    'same' (stride 1) or (top, bottom, left, right) (asymmetric, as ONNX pads; the kernels
    pad all four sides anyway, so this costs nothing over a symmetric pad). Group convolution: groups=g; depthwise: groups=C_in
    (C_out a multiple of C_in); pointwise: kernel_size=1."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True,
                 *, init=None, bias_init=None, rng=None, seed=None, dtype=np.float32):
        super().__init__(dtype, init, bias_init, rng, seed)
        self.in_channels = positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        self.stride = pair(stride, "stride", 1)
        self.padding = _conv_padding_arg(padding, self.stride)
        self.dilation = pair(dilation, "dilation", 1)
        self.groups = positive_int(groups, "groups")
        self.bias = flag(bias, "bias")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"groups: {self.groups} must divide in_channels ({self.in_channels}) and "
                             f"out_channels ({self.out_channels})")
        kh, kw = self.kernel_size
        shape = (self.out_channels, self.in_channels // self.groups, kh, kw)
        self._make(shape, self.out_channels if self.bias else 0, shape[1] * kh * kw, self.out_channels * kh * kw)

    def _args(self):
        return dict(in_channels=self.in_channels, out_channels=self.out_channels, kernel_size=self.kernel_size,
                    stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups,
                    bias=self.bias, **self._init_args())

    def _geom(self):
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation, groups=self.groups)

    def forward(self, x, training=False):
        x = self._input(x)
        self._cache = x
        return F.conv2d(x, self._params["weight"], self._params.get("bias"), **self._geom())

    def backward(self, grad_y):
        x = self._saved()
        gx, _, _ = F.conv2d_backward(grad_y, x, self._params["weight"], **self._geom(),
                                     need_grad_x=self.need_input_grad, need_grad_bias=bool(self.bias),
                                     grad_weight_out=self._grads["weight"], grad_bias_out=self._grads.get("bias"))
        return gx


class ConvTranspose2d(ParamLayer):
    """Transposed convolution (learned upsampling). x (N, C_in, H, W) -> (N, C_out, OH, OW),
    OH = (H-1)*stride - 2*padding + dilation*(kh-1) + output_padding + 1.

    weight (C_in, C_out/groups, kh, kw) as torch; the initialisers see torch's fans
    (fan_in = C_out/groups*kh*kw)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, output_padding=0, groups=1,
                 bias=True, dilation=1, *, init=None, bias_init=None, rng=None, seed=None, dtype=np.float32):
        super().__init__(dtype, init, bias_init, rng, seed)
        self.in_channels = positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        self.kernel_size = pair(kernel_size, "kernel_size", 1)
        self.stride = pair(stride, "stride", 1)
        if isinstance(padding, str):
            raise ValueError(f"padding: ConvTranspose2d takes an int or a pair, got {padding!r}")
        self.padding = pair(padding, "padding", 0)
        self.output_padding = pair(output_padding, "output_padding", 0)
        self.dilation = pair(dilation, "dilation", 1)
        self.groups = positive_int(groups, "groups")
        self.bias = flag(bias, "bias")
        if self.in_channels % self.groups or self.out_channels % self.groups:
            raise ValueError(f"groups: {self.groups} must divide in_channels ({self.in_channels}) and "
                             f"out_channels ({self.out_channels})")
        for op, s, d in zip(self.output_padding, self.stride, self.dilation):
            if op >= s and op >= d:
                raise ValueError(f"output_padding: must be smaller than stride or dilation, got "
                                 f"output_padding={self.output_padding}, stride={self.stride}, "
                                 f"dilation={self.dilation}")
        kh, kw = self.kernel_size
        shape = (self.in_channels, self.out_channels // self.groups, kh, kw)
        self._make(shape, self.out_channels if self.bias else 0, shape[1] * kh * kw, self.in_channels * kh * kw)

    def _args(self):
        return dict(in_channels=self.in_channels, out_channels=self.out_channels, kernel_size=self.kernel_size,
                    stride=self.stride, padding=self.padding, output_padding=self.output_padding,
                    groups=self.groups, bias=self.bias, dilation=self.dilation, **self._init_args())

    def _geom(self):
        return dict(stride=self.stride, padding=self.padding, output_padding=self.output_padding,
                    groups=self.groups, dilation=self.dilation)

    def forward(self, x, training=False):
        x = self._input(x)
        self._cache = x
        return F.conv_transpose2d(x, self._params["weight"], self._params.get("bias"), **self._geom())

    def backward(self, grad_y):
        x = self._saved()
        gx, gw, gb = F.conv_transpose2d_backward(grad_y, x, self._params["weight"], **self._geom(),
                                                 need_grad_x=self.need_input_grad)
        self._set_grad("weight", gw)
        if self.bias:
            self._set_grad("bias", gb)
        return gx
