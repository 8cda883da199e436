"""Padding of the last two dimensions (torch's F.pad on NCHW images): pad / pad_backward.

NumPy, not C++: a pad is one memory-bound copy, which np.pad already is. The backward
adds the gradient of each padded position to the input position it copied (reflect,
replicate) with a loop over the pad widths only, never over pixels."""
from __future__ import annotations

import numpy as np

from .._args import as_float, as_int, float_array

__all__ = ["pad", "pad_backward", "pad_output_size"]

PAD_MODES = ("constant", "reflect", "replicate")


def _pads(pads, name="pads"):
    """torch's order for the last two dims: (left, right, top, bottom); an int pads all four sides."""
    if isinstance(pads, (tuple, list, np.ndarray)):
        vals = [as_int(v, name) for v in pads]
        if len(vals) == 2:
            vals = vals * 2
        if len(vals) != 4:
            raise ValueError(f"{name}: expected (left, right, top, bottom), a pair (left/right, top/bottom) "
                             f"or an int, got {pads!r}")
    else:
        vals = [as_int(pads, name)] * 4
    return tuple(vals)


def _check(x_shape, pads, mode):
    if mode not in PAD_MODES:
        raise ValueError(f"mode: expected one of {', '.join(PAD_MODES)}, got {mode!r}")
    if len(x_shape) < 2:
        raise ValueError(f"x: expected at least 2 dimensions (..., H, W), got shape {tuple(x_shape)}")
    left, right, top, bottom = pads
    h, w = x_shape[-2:]
    if mode != "constant" and min(pads) < 0:
        raise ValueError(f"pads: negative pads (cropping) only with mode='constant', got {pads} for mode {mode!r}")
    if mode == "reflect" and (max(left, right) >= w or max(top, bottom) >= h):
        raise ValueError(f"pads: reflect padding must be smaller than the padded dimension, got pads {pads} "
                         f"for an input of shape {tuple(x_shape)}")
    if mode == "replicate" and (h == 0 or w == 0) and max(pads) > 0:
        raise ValueError(f"x: replicate padding of an empty dimension, shape {tuple(x_shape)}")
    oh, ow = h + top + bottom, w + left + right
    if oh < 0 or ow < 0:
        raise ValueError(f"pads: {pads} crop more than the input of shape {tuple(x_shape)}")
    return oh, ow


def pad_output_size(in_size, pads):
    """(OH, OW) of padding an (H, W) plane by ``pads`` = (left, right, top, bottom)."""
    left, right, top, bottom = _pads(pads)
    return in_size[0] + top + bottom, in_size[1] + left + right


def _crop(x, pads):
    """Applies the negative pads as a crop; returns (x cropped, the non-negative pads left)."""
    left, right, top, bottom = pads
    h, w = x.shape[-2:]
    x = x[..., max(-top, 0):h - max(-bottom, 0), max(-left, 0):w - max(-right, 0)]
    return x, tuple(max(v, 0) for v in pads)


def pad(x, pads, mode="constant", value=0.0):
    """Pads the last two dimensions of x (..., H, W) by ``pads`` = (left, right, top, bottom)
    (torch's F.pad order; an int pads all sides). mode 'constant' (with ``value``; negative pads
    crop), 'reflect' (mirror without repeating the edge, pads < the dimension) or 'replicate'
    (repeat the edge). Returns (..., H + top + bottom, W + left + right)."""
    x = float_array(x, "x")
    pads = _pads(pads)
    _check(x.shape, pads, mode)
    x, (left, right, top, bottom) = _crop(x, pads)
    widths = [(0, 0)] * (x.ndim - 2) + [(top, bottom), (left, right)]
    if mode == "constant":
        return np.pad(x, widths, constant_values=x.dtype.type(as_float(value, "value")))
    return np.pad(x, widths, mode="reflect" if mode == "reflect" else "edge")


def _sources(n, before, after, mode):
    """For each padded position along one axis (before, then after the n inputs), the input it copies."""
    if mode == "reflect":
        return list(range(before, 0, -1)), [n - 2 - i for i in range(after)]
    return [0] * before, [n - 1] * after


def pad_backward(grad_out, input_shape, pads, mode="constant"):
    """Gradient of pad with respect to x, shaped ``input_shape``: the interior of grad_out, plus (reflect,
    replicate) the gradient of every padded position added to the input position it copied."""
    grad_out = float_array(grad_out, "grad_out")
    shape = tuple(as_int(v, "input_shape") for v in input_shape)
    pads = _pads(pads)
    oh, ow = _check(shape, pads, mode)
    want = shape[:-2] + (oh, ow)
    if grad_out.shape != want:
        raise ValueError(f"grad_out: expected shape {want} (the output of pad), got {grad_out.shape}")
    left, right, top, bottom = pads
    h, w = shape[-2:]
    if mode == "constant":
        gx = np.zeros(shape, grad_out.dtype)
        # the output's interior is the input region that survived the crop
        t, b, l, r = max(top, 0), max(bottom, 0), max(left, 0), max(right, 0)
        ct, cb, cl, cr = max(-top, 0), max(-bottom, 0), max(-left, 0), max(-right, 0)
        gx[..., ct:h - cb, cl:w - cr] = grad_out[..., t:oh - b, l:ow - r]
        return gx
    # columns first: (..., OH, OW) -> (..., OH, W)
    g = grad_out[..., left:left + w].copy()
    src_l, src_r = _sources(w, left, right, mode)
    for j, s in enumerate(src_l):
        g[..., s] += grad_out[..., j]
    for j, s in enumerate(src_r):
        g[..., s] += grad_out[..., left + w + j]
    gx = g[..., top:top + h, :].copy()
    src_t, src_b = _sources(h, top, bottom, mode)
    for i, s in enumerate(src_t):
        gx[..., s, :] += g[..., i, :]
    for i, s in enumerate(src_b):
        gx[..., s, :] += g[..., top + h + i, :]
    return gx
