"""Classification metrics (argument order as scikit-learn: truth first).

``y_pred`` may be predicted labels (N,) or scores/logits/probabilities (N, C),
which are reduced with argmax (the first maximum on ties). Also
:func:`field_distance`, how local a learned receptive field is."""
from __future__ import annotations

import operator

import numpy as np

__all__ = ["accuracy", "top_k_accuracy", "confusion_matrix", "field_distance"]


def _labels(y, name):
    y = np.asarray(y)
    if y.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected integer class labels, got dtype {y.dtype}")
    if y.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of labels (N,), got shape {y.shape}")
    if y.size and y.min() < 0:
        raise ValueError(f"{name}: labels must be non-negative, got {y.min()}")
    return y


def _scores(s, name):
    s = np.asarray(s)
    if s.dtype.kind not in "fiu" or s.ndim != 2:
        raise ValueError(f"{name}: expected scores of shape (N, C), got shape {s.shape} dtype {s.dtype}")
    return s


def _predicted(y_pred, n):
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 2:
        y_pred = _scores(y_pred, "y_pred").argmax(axis=1)
    else:
        y_pred = _labels(y_pred, "y_pred")
    if y_pred.shape[0] != n:
        raise ValueError(f"y_pred: expected {n} predictions (the length of y_true), got {y_pred.shape[0]}")
    return y_pred


def accuracy(y_true, y_pred) -> float:
    """Fraction of samples whose predicted label equals y_true."""
    y_true = _labels(y_true, "y_true")
    if y_true.size == 0:
        raise ValueError("y_true: accuracy of an empty set is undefined")
    return float(np.mean(_predicted(y_pred, y_true.shape[0]) == y_true))


def top_k_accuracy(y_true, y_score, k=5) -> float:
    """Fraction of samples whose true class is among the k highest scores.

    Classes are ranked by score, ties broken by the lower class index (so k=1 agrees
    with accuracy's argmax)."""
    y_true = _labels(y_true, "y_true")
    s = _scores(y_score, "y_score")
    k = operator.index(k)
    if k < 1:
        raise ValueError(f"k: expected a positive int, got {k}")
    if s.shape[0] != y_true.shape[0]:
        raise ValueError(f"y_score: expected {y_true.shape[0]} rows (the length of y_true), got shape {s.shape}")
    if y_true.size == 0:
        raise ValueError("y_true: accuracy of an empty set is undefined")
    if y_true.max() >= s.shape[1]:
        raise ValueError(f"y_true: label {y_true.max()} is out of range for {s.shape[1]} classes")
    true_score = np.take_along_axis(s, y_true[:, None], axis=1)
    ahead = (s > true_score).sum(axis=1)
    ahead += ((s == true_score) & (np.arange(s.shape[1])[None, :] < y_true[:, None])).sum(axis=1)
    return float(np.mean(ahead < k))


def confusion_matrix(y_true, y_pred, num_classes=None) -> np.ndarray:
    """(C, C) int64 counts: row = true class, column = predicted class (Kyoto Univ. exercise §6.3)."""
    y_true = _labels(y_true, "y_true")
    y_pred = _predicted(y_pred, y_true.shape[0])
    top = int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1
    if num_classes is None:
        c = top
    else:
        c = operator.index(num_classes)
        if c < 1:
            raise ValueError(f"num_classes: expected a positive int, got {c}")
        if top > c:
            raise ValueError(f"num_classes: labels up to {top - 1} do not fit in {c} classes")
    flat = y_true.astype(np.int64) * c + y_pred.astype(np.int64)
    return np.bincount(flat, minlength=c * c).reshape(c, c)


def field_distance(index, shape, perm=None):
    """Mean Euclidean distance, in original image pixels, between each output's centre (slot 0)
    and its other slots' pixels (for data permuted with ``perm``: position j holds pixel perm[j]).
    A 3x3 grid gives ~1.2; uniformly random fields about 14.6 on 28x28 (7.3 on 14x14)."""
    index = np.asarray(index)
    h, w = shape
    perm = None if perm is None else np.asarray(perm)
    orig = (lambda a: perm[a]) if perm is not None else (lambda a: a)
    centre = orig(index[:, 0])
    others = index[:, 1:]
    valid = others >= 0
    o = orig(np.where(valid, others, 0))
    cr, cc = np.divmod(centre, w)
    orr, oc = np.divmod(o, w)
    d = np.hypot(orr - cr[:, None], oc - cc[:, None])
    return float(d[valid].mean()) if valid.any() else 0.0
