"""What every naive reference shares: argument parsing and output-size formulas,
written again here from torch's rules (not imported from pyconvnet, so the oracle
stays independent of the code it checks)."""
from __future__ import annotations

import operator

import numpy as np

_F64 = np.float64


def _pair(v, name):
    """int-or-pair as torch accepts it: 3 -> (3, 3); (2, 3) or [2, 3] -> (2, 3); [3] -> (3, 3)."""
    if isinstance(v, (tuple, list, np.ndarray)):
        vals = [operator.index(a) for a in v]
        if len(vals) == 1:
            vals = vals * 2
        if len(vals) != 2:
            raise ValueError(f"{name}: expected an int or a pair of ints, got {v!r}")
        return vals[0], vals[1]
    i = operator.index(v)
    return i, i


def _float_dtype(a):
    """The dtype results are returned in: the input's when it is float32/float64
    (lists and ints become float64, as np.asarray would make them)."""
    return a.dtype if a.dtype in (np.float32, np.float64) else np.dtype(_F64)


def _as_batch(a, name):
    """(C, H, W) -> (1, C, H, W), as torch treats an unbatched input; returns (a4, was_unbatched)."""
    a = np.asarray(a)
    if a.ndim == 3:
        return a[None], True
    if a.ndim != 4:
        raise ValueError(f"{name}: expected (N, C, H, W) or (C, H, W), got shape {a.shape}")
    return a, False


def _span(k, d):
    """Extent of a dilated window: d*(k-1) + 1 pixels."""
    return d * (k - 1) + 1


def _conv_out_size(size, k, s, pad_total, d):
    """floor((size + pad_total - d*(k-1) - 1) / s) + 1: one output per window start
    s apart that keeps the whole dilated window inside the padded input."""
    if size + pad_total < _span(k, d):
        raise ValueError(f"window of {k} (dilation {d}) is larger than the padded input ({size} + {pad_total})")
    return (size + pad_total - _span(k, d)) // s + 1


def _pool_out_size(size, k, s, p, d, ceil_mode):
    """torch's pooling_output_shape: floor (or ceil) of (size + 2p - d*(k-1) - 1)/s, plus 1.

    With ceil_mode a partial last window is kept, but only if it starts inside the
    input or the left padding; one starting in the right padding would see nothing
    but padding, so it is dropped."""
    num = size + 2 * p - d * (k - 1) - 1
    out = (num + (s - 1 if ceil_mode else 0)) // s + 1  # // floors, as torch's div_rtn
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    if out < 1:
        raise ValueError(f"pooling window {k} (dilation {d}, padding {p}) gives output size {out} < 1 "
                         f"for input size {size}")
    return out


def _conv_pad4(padding, kernel, stride, dilation):
    """padding as (top, bottom, left, right).

    'same' (stride 1 only, as torch) pads d*(k-1) in total, half on the top/left and
    the odd extra on the bottom/right, so the output keeps the input size."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding='same' is not supported for strided convolutions (stride={stride})")
            pads = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            return tuple(pads)
        raise ValueError(f"padding: expected an int, a pair, 'valid' or 'same', got {padding!r}")
    if isinstance(padding, (tuple, list)) and len(padding) == 4:  # (top, bottom, left, right)
        return tuple(operator.index(v) for v in padding)
    ph, pw = _pair(padding, "padding")
    return ph, ph, pw, pw


def _pad(a, pad4, value=0.0):
    """Pads the last two axes of a (N, C, H, W) float64 array by (top, bottom, left, right)."""
    t, b, l, r = pad4
    return np.pad(a, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=value)


def result_dtype(*arrays):
    """The common dtype of the given arrays (None entries skipped)."""
    return np.result_type(*[np.asarray(a).dtype for a in arrays if a is not None])
