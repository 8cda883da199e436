"""Batch normalisation (Kyoto Univ. exercise §5.3).

training=True normalises with the batch statistics (eqs. 28-31), backward is eqs.
32-37, and the running statistics in ``buffers`` are updated in place:
``r = (1 - momentum) * r + momentum * batch_stat`` with the unbiased batch variance
(torch's convention). momentum=None uses the plain average of all batch
statistics seen so far (the Kyoto Univ. exercise: "the expected values of mu_B and sigma_B^2
over enough mini-batches"), counted by ``num_batches_tracked``.
training=False uses the running statistics (eq. 38):
``y = gamma / sqrt(Var + eps) * x + (beta - gamma * E / sqrt(Var + eps))``.
``scale=False`` fixes gamma to 1 (no ``weight`` parameter; only the shift ``bias`` is
learned), as the airbench CIFAR-10 network's batch norms do.
"""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .._args import as_int, float_dtype
from .base import Layer

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Layer):
    _ndims: tuple = ()
    _layout = ""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, *, scale=True, dtype=np.float32):
        super().__init__()
        self.num_features = as_int(num_features, "num_features")
        if self.num_features < 1:
            raise ValueError(f"num_features: expected a positive int, got {self.num_features}")
        self.eps = float(eps)
        if not self.eps > 0:
            raise ValueError(f"eps: expected a positive float, got {eps!r}")
        if momentum is not None:
            momentum = float(momentum)
            if not 0.0 <= momentum <= 1.0:
                raise ValueError(f"momentum: expected a float in [0, 1] or None, got {momentum!r}")
        self.momentum = momentum
        if not isinstance(affine, (bool, np.bool_)):
            raise TypeError(f"affine: expected a bool, got {affine!r}")
        self.affine = bool(affine)
        if not isinstance(scale, (bool, np.bool_)):
            raise TypeError(f"scale: expected a bool, got {scale!r}")
        self.scale = bool(scale)
        self.dtype = float_dtype(dtype)
        c = self.num_features
        if self.affine:
            if self.scale:
                self._add_param("weight", np.ones(c, self.dtype))
            self._add_param("bias", np.zeros(c, self.dtype))
        self._buffers["running_mean"] = np.zeros(c, self.dtype)
        self._buffers["running_var"] = np.ones(c, self.dtype)
        self._buffers["num_batches_tracked"] = np.zeros((), np.int64)

    def _args(self):
        return dict(num_features=self.num_features, eps=self.eps, momentum=self.momentum, affine=self.affine,
                    scale=self.scale, dtype=self.dtype.name)

    def forward(self, x, training=False):
        x = self._input(x)
        if x.ndim not in self._ndims:
            raise ValueError(f"x: expected a {self._layout} array, got shape {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(f"x: expected {self.num_features} channels (num_features) in dimension 1, "
                             f"got shape {x.shape}")
        b = self._buffers
        w, bias = self._params.get("weight"), self._params.get("bias")
        if training:
            tracked = b["num_batches_tracked"]
            momentum = self.momentum if self.momentum is not None else 1.0 / (int(tracked) + 1)
            y, mean, invstd = F.batch_norm(x, b["running_mean"], b["running_var"], w, bias, training=True,
                                           momentum=momentum, eps=self.eps, return_stats=True)
            tracked += 1
        else:
            y, mean, invstd = F.batch_norm(x, b["running_mean"], b["running_var"], w, bias, training=False,
                                           eps=self.eps, return_stats=True)
        self._cache = (x, mean, invstd, bool(training))
        return y

    def backward(self, grad_y):
        x, mean, invstd, training = self._saved()
        w = self._params.get("weight")
        if training:
            gx, gw, gb = F.batch_norm_backward(grad_y, x, w, mean, invstd)
        else:
            # eval mode is a per-channel affine map: y = x * (w * invstd) + const
            grad_y = np.asarray(grad_y)
            if grad_y.shape != x.shape:
                raise ValueError(f"grad_y: expected the shape of x {x.shape}, got {grad_y.shape}")
            bshape = (1, -1) + (1,) * (x.ndim - 2)
            axes = (0,) + tuple(range(2, x.ndim))
            scale = invstd if w is None else w * invstd
            gx = grad_y * scale.reshape(bshape)
            gb = grad_y.sum(axis=axes)
            gw = (grad_y * (x - mean.reshape(bshape))).sum(axis=axes) * invstd
        if self.affine:
            if self.scale:
                self._set_grad("weight", gw)
            self._set_grad("bias", gb)
        return gx


class BatchNorm1d(_BatchNorm):
    """Batch norm over x (N, C) or (N, C, L); statistics per feature C."""
    _ndims = (2, 3)
    _layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch norm over x (N, C, H, W); statistics per channel."""
    _ndims = (4,)
    _layout = "(N, C, H, W)"
