"""Naive padding of the last two dimensions (torch's F.pad): every output pixel looks up the
input pixel it copies, written from the definitions of the three modes."""
from __future__ import annotations

import operator

import numpy as np

from ._common import _F64, _float_dtype

__all__ = ["pad", "pad_backward"]


def _pads(pads):
    vals = [operator.index(v) for v in pads] if isinstance(pads, (tuple, list)) else [operator.index(pads)] * 4
    if len(vals) == 2:
        vals = vals * 2
    return tuple(vals)  # (left, right, top, bottom)


def _source(i, n, before, mode):
    """Input index that output index i (padded by ``before`` in front) copies, or None (constant)."""
    k = i - before
    if 0 <= k < n:
        return k
    if mode == "constant":
        return None
    if mode == "replicate":
        return 0 if k < 0 else n - 1
    return -k if k < 0 else 2 * (n - 1) - k  # reflect: mirror about the edge pixel


def pad(x, pads, mode="constant", value=0.0):
    """y[..., i, j] = x[..., src(i), src(j)], or ``value`` where the constant mode has no source."""
    x = np.asarray(x)
    left, right, top, bottom = _pads(pads)
    h, w = x.shape[-2:]
    oh, ow = h + top + bottom, w + left + right
    x64 = x.astype(_F64)
    y = np.empty(x.shape[:-2] + (oh, ow))
    for i in range(oh):
        si = _source(i, h, top, mode)
        for j in range(ow):
            sj = _source(j, w, left, mode)
            y[..., i, j] = value if si is None or sj is None else x64[..., si, sj]
    return y.astype(_float_dtype(x))


def pad_backward(grad_out, input_shape, pads, mode="constant"):
    """Every output position adds its gradient to the input position it copied."""
    go = np.asarray(grad_out)
    left, right, top, bottom = _pads(pads)
    shape = tuple(operator.index(v) for v in input_shape)
    h, w = shape[-2:]
    g64 = go.astype(_F64)
    gx = np.zeros(shape)
    for i in range(go.shape[-2]):
        si = _source(i, h, top, mode)
        for j in range(go.shape[-1]):
            sj = _source(j, w, left, mode)
            if si is not None and sj is not None:
                gx[..., si, sj] += g64[..., i, j]
    return gx.astype(_float_dtype(go))
