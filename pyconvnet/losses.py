"""Loss functions with their gradients (no autograd).

Each loss has ``forward(prediction, target) -> float`` (which caches what the
gradient needs), ``backward(grad=1.0) -> grad_prediction`` (the gradient of
``grad * loss``), ``__call__ = forward``, and ``reduction`` 'mean' (default) or 'sum'.

SoftmaxCrossEntropy is softmax + cross-entropy fused (Kyoto Univ. exercise, eqs. 5-8, 12):
    loss = mean_i [ logsumexp(a_i) - a_i[y_i] ]   with   logsumexp(a) = alpha + log sum exp(a - alpha), alpha = max a
    grad = (softmax(a) - onehot(y)) / B
which stays finite for any finite logits (exp only ever sees values <= 0).
"""
from __future__ import annotations

import math

import numpy as np

from . import _core
from ._args import float_array

__all__ = ["Loss", "SoftmaxCrossEntropy", "MSELoss", "BCEWithLogitsLoss", "log_softmax"]


def log_softmax(a, axis=1):
    """a - logsumexp(a) along ``axis``, computed stably (Kyoto Univ. exercise, eqs. 5-6)."""
    a = float_array(a, "a")
    z = a - a.max(axis=axis, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=axis, keepdims=True))
    z -= lse
    return z


class Loss:
    """Base class: see the module docstring."""

    def __init__(self, reduction="mean"):
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction: expected 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction
        self._cache = None

    def __call__(self, prediction, target):
        return self.forward(prediction, target)

    def _saved(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward: called before forward (nothing is cached)")
        return self._cache

    def _scale(self, count):
        if self.reduction == "sum":
            return 1.0
        return 1.0 / count if count else math.nan  # the mean of nothing, as torch: nan

    def config(self):
        return {"class": type(self).__name__, "args": {"reduction": self.reduction}}

    def __repr__(self):
        return f"{type(self).__name__}(reduction={self.reduction!r})"


def _same_shape_target(target, pred, name="target"):
    t = float_array(target, name)
    if t.shape != pred.shape:
        raise ValueError(f"{name}: expected the shape of the prediction {pred.shape}, got {t.shape}")
    return t


class SoftmaxCrossEntropy(Loss):
    """Cross-entropy of softmax(logits) against labels, fused with its gradient.

    logits (N, C) or (N, C, d1, ...) (class axis 1, e.g. per-pixel segmentation);
    labels: integer class indices (N,) / (N, d1, ...) in [0, C), or one-hot / class
    probabilities of the logits' shape. 'mean' averages over the N (* d1 * ...)
    positions, so the gradient is (softmax - onehot) / B, the Kyoto Univ. exercise's eq. 12.

    label_smoothing=eps (torch's): the target is (1 - eps) * onehot + eps / C, so the loss
    is (1 - eps) * CE(labels) + eps * CE(uniform) and the gradient softmax - that target."""

    def __init__(self, reduction="mean", label_smoothing=0.0):
        super().__init__(reduction)
        ls = label_smoothing
        if isinstance(ls, (bool, np.bool_)) or not isinstance(ls, (int, float, np.integer, np.floating)) \
                or not 0.0 <= float(ls) <= 1.0:
            raise ValueError(f"label_smoothing: expected a float in [0, 1], got {label_smoothing!r}")
        self.label_smoothing = float(ls)

    def config(self):
        cfg = super().config()
        cfg["args"]["label_smoothing"] = self.label_smoothing
        return cfg

    def __repr__(self):
        return f"SoftmaxCrossEntropy(reduction={self.reduction!r}, label_smoothing={self.label_smoothing})"

    def forward(self, logits, labels):
        if self.label_smoothing:
            return self._forward_smoothed(logits, labels)
        return self._forward(logits, labels)

    def _forward_smoothed(self, logits, labels):
        """(1 - eps) CE(y) + eps CE(uniform) = CE(y) + eps * mean_k (a_y - a_k) per position: the
        plain pass plus one correction term, and the gradient's correction eps (onehot - 1/C)."""
        eps = self.label_smoothing
        a = float_array(logits, "logits")
        labels = np.asarray(labels)
        value = self._forward(a, labels)
        p, idx, t, count = self._cache
        c = a.shape[1]
        if idx is not None or t is None:  # integer labels
            y = labels.astype(np.intp, copy=False)
            picked = np.take_along_axis(a, np.expand_dims(y, 1), axis=1)
            extra = float(np.sum(picked, dtype=np.float64) - np.sum(a, dtype=np.float64) / c)
            target = None
        else:
            target = t
            extra = float(np.sum(t * a, dtype=np.float64) - np.sum(t.sum(axis=1, keepdims=True) * a,
                                                                   dtype=np.float64) / c)
        self._smoothing = (labels, target, c)
        return value + eps * extra * self._scale(count)

    def _forward(self, logits, labels):
        self._smoothing = None
        a = float_array(logits, "logits")
        if a.ndim < 2:
            raise ValueError(f"logits: expected (N, C) or (N, C, d1, ...), got shape {a.shape}")
        c = a.shape[1]
        labels = np.asarray(labels)
        if a.ndim == 2 and labels.dtype.kind in "iu":
            # the common case in one C++ pass (same arithmetic as below); it checks the labels
            total, p = _core.softmax_xent_forward(a, labels)
            self._cache = (p, labels.copy(), None, a.shape[0])
            return total * self._scale(a.shape[0])
        z = a - a.max(axis=1, keepdims=True)          # eq. 6: subtract alpha = max
        p = np.exp(z)
        s = p.sum(axis=1, keepdims=True)
        log_s = np.log(s)
        p /= s                                         # softmax, eq. 5
        count = a.size // c
        if labels.dtype.kind in "iu":
            want = a.shape[:1] + a.shape[2:]
            if labels.shape != want:
                raise ValueError(f"labels: expected integer labels of shape {want} for logits {a.shape}, "
                                 f"got {labels.shape}")
            if labels.size and (labels.min() < 0 or labels.max() >= c):
                raise ValueError(f"labels: class indices must lie in [0, {c}), got range "
                                 f"[{labels.min()}, {labels.max()}]")
            idx = np.expand_dims(labels.astype(np.intp, copy=False), 1)
            picked = np.take_along_axis(z, idx, axis=1)
            total = float(np.sum(log_s, dtype=np.float64) - np.sum(picked, dtype=np.float64))
            self._cache = (p, idx, None, count)
        elif labels.dtype.kind == "f":
            t = _same_shape_target(labels, a, "labels")
            # sum_k -t_k log p_k = sum_k t_k (log s - z_k)
            total = float(np.sum(t * (log_s - z), dtype=np.float64))
            self._cache = (p, None, t, count)
        else:
            raise TypeError(f"labels: expected integer class indices or float one-hot/probabilities, "
                            f"got dtype {labels.dtype}")
        return total * self._scale(count)

    def backward(self, grad=1.0):
        g = self._backward(grad)
        smoothing = getattr(self, "_smoothing", None)
        if smoothing is not None:
            labels, target, c = smoothing
            k = g.dtype.type(float(grad) * self._scale(self._cache[3]) * self.label_smoothing)
            if target is None:  # + eps (onehot - 1/C) per position
                idx = np.expand_dims(labels.astype(np.intp, copy=False), 1)
                np.put_along_axis(g, idx, np.take_along_axis(g, idx, axis=1) + k, axis=1)
            else:  # + eps (t - sum(t) / C)
                g += k * target
            g -= (k / c) * (1.0 if target is None else target.sum(axis=1, keepdims=True))
        return g

    def _backward(self, grad):
        p, idx, t, count = self._saved()
        if idx is not None and idx.ndim == 1:  # integer labels of 2-D logits: the C++ pass
            return _core.softmax_xent_backward(p, idx, float(grad) * self._scale(count))
        k = p.dtype.type(float(grad) * self._scale(count))
        g = p.copy()
        if idx is not None:
            np.put_along_axis(g, idx, np.take_along_axis(g, idx, axis=1) - 1, axis=1)
        else:
            g *= t.sum(axis=1, keepdims=True)          # d/da_j sum_k t_k (lse - a_k) = p_j sum_k t_k - t_j
            g -= t
        g *= k
        return g

    def probabilities(self):
        """softmax(logits) of the last forward (a copy)."""
        return self._saved()[0].copy()


class MSELoss(Loss):
    """mean((prediction - target)^2) over all elements; gradient 2 (prediction - target) / n."""

    def forward(self, prediction, target):
        x = float_array(prediction, "prediction")
        t = _same_shape_target(target, x)
        d = x - t
        self._cache = d
        return float(np.sum(d * d, dtype=np.float64)) * self._scale(d.size)

    def backward(self, grad=1.0):
        d = self._saved()
        return d * d.dtype.type(2.0 * float(grad) * self._scale(d.size))


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits x with targets t in [0, 1], stable for any x:
    loss = mean(max(x, 0) - x t + log(1 + exp(-|x|))); gradient (sigmoid(x) - t) / n."""

    def forward(self, logits, target):
        x = float_array(logits, "logits")
        t = _same_shape_target(target, x)
        e = np.exp(-np.abs(x))                         # in (0, 1]: no overflow
        loss = np.maximum(x, 0) - x * t + np.log1p(e)
        sig = np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)
        self._cache = (sig, t)
        return float(np.sum(loss, dtype=np.float64)) * self._scale(x.size)

    def backward(self, grad=1.0):
        sig, t = self._saved()
        g = sig - t
        g *= g.dtype.type(float(grad) * self._scale(g.size))
        return g
