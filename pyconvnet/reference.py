"""Naive NumPy reference of the functional API: the test oracle and the "naive
loops" baseline of ``bench/``.

Every function is written straight from its formula as plain Python loops over
output positions (for the scatter-shaped ops, over input positions) with a small
NumPy reduction over one receptive field. Nothing here is clever or fast on
purpose: the point is to be obviously right, and independent of the C++ kernels
and of ``pyconvnet.functional`` (the loops above import nothing from pyconvnet; the
relaxed-convolution loops of seed 003 are re-exported at the end from ``pyconvnet.relaxed``).

Semantics and signatures follow ``torch.nn.functional``: NCHW layout (an
unbatched (C, H, W) input is accepted where torch accepts it), float32 or
float64 in, the same dtype out, int-or-pair arguments, torch's output-size
rules. Arithmetic is done in float64 and cast back at the end, so a float32
result is the correctly rounded value and not one more float32 implementation.
Inputs are never modified, except the running statistics ``batch_norm`` updates
in place (as torch does).

Formulas are those of the seed course notes (seed 002, "[発展課題 A]"):
convolution and im2col §5.6 eqs. (56)-(62), max pooling §5.7 eqs. (63)-(64),
batch normalisation §5.3 eqs. (28)-(38).
"""
from __future__ import annotations

import operator

import numpy as np

__all__ = [
    "conv2d", "conv2d_backward", "conv_transpose2d", "conv_transpose2d_backward",
    "unfold", "fold", "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "batch_norm", "batch_norm_backward", "linear", "linear_backward", "relu", "relu_backward",
]

_F64 = np.float64


# ============================================================================ helpers
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
    ph, pw = _pair(padding, "padding")
    return ph, ph, pw, pw


def _pad(a, pad4, value=0.0):
    """Pads the last two axes of a (N, C, H, W) float64 array by (top, bottom, left, right)."""
    t, b, l, r = pad4
    return np.pad(a, ((0, 0), (0, 0), (t, b), (l, r)), constant_values=value)


# ============================================================================ convolution
def _check_groups(c_in, c_out, groups):
    if groups < 1 or c_in % groups or c_out % groups:
        raise ValueError(f"groups={groups} must divide both C_in={c_in} and C_out={c_out}")


def _conv_geometry(x4, weight, stride, padding, dilation, groups):
    """Parses the conv2d arguments; returns (stride, dilation, pad4, groups, OH, OW)."""
    n, c_in, h, w = x4.shape
    c_out, c_in_g, kh, kw = weight.shape
    groups = operator.index(groups)
    _check_groups(c_in, c_out, groups)
    if c_in_g * groups != c_in:
        raise ValueError(f"weight {weight.shape} expects {c_in_g * groups} input channels, x has {c_in}")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    pad4 = _conv_pad4(padding, (kh, kw), stride, dilation)
    oh = _conv_out_size(h, kh, stride[0], pad4[0] + pad4[1], dilation[0])
    ow = _conv_out_size(w, kw, stride[1], pad4[2] + pad4[3], dilation[1])
    return stride, dilation, pad4, groups, oh, ow


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution as torch computes it (a cross-correlation).

    x (N, C_in, H, W) or (C_in, H, W); weight (C_out, C_in/groups, kh, kw); bias (C_out,) or None.
    padding: int, pair, 'valid' or 'same' (stride 1 only). Returns (N, C_out, OH, OW) with
    OH = floor((H + pad_top + pad_bottom - dilation*(kh-1) - 1) / stride) + 1 (OW alike).

    Seed 002 eqs. (56)-(58), with torch's stride/dilation/groups:
        y[n, o, i, j] = b[o] + sum_{c, s, t} xpad[n, g*C_in_g + c, i*sh + s*dh, j*sw + t*dw] * w[o, c, s, t]
    where g = o // (C_out/groups) is the group of output channel o.
    """
    x4, unbatched = _as_batch(x, "x")
    weight = np.asarray(weight)
    dtype = _float_dtype(x4)
    (sh, sw), (dh, dw), pad4, groups, oh, ow = _conv_geometry(x4, weight, stride, padding, dilation, groups)
    n, c_in, _, _ = x4.shape
    c_out, c_in_g, kh, kw = weight.shape
    c_out_g = c_out // groups
    xp = _pad(x4.astype(_F64), pad4)
    w64 = weight.astype(_F64)
    b64 = np.zeros(c_out) if bias is None else np.asarray(bias, _F64)

    y = np.zeros((n, c_out, oh, ow))
    for b in range(n):
        for o in range(c_out):
            g = o // c_out_g
            chans = slice(g * c_in_g, (g + 1) * c_in_g)  # only the input channels of o's group
            for i in range(oh):
                for j in range(ow):
                    patch = xp[b, chans, i * sh: i * sh + _span(kh, dh): dh, j * sw: j * sw + _span(kw, dw): dw]
                    y[b, o, i, j] = np.sum(patch * w64[o]) + b64[o]
    y = y.astype(dtype)
    return y[0] if unbatched else y


def conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1, *, need_grad_x=True):
    """Gradients of conv2d: returns (grad_x, grad_weight, grad_bias).

    grad_out (N, C_out, OH, OW) (or (C_out, OH, OW) with an unbatched x); x and weight as
    given to conv2d. grad_x has x's shape (None when need_grad_x=False), grad_weight the
    weight's, grad_bias is (C_out,) = grad_out summed over N, OH, OW.

    Seed 002 eqs. (60)-(62) (dE/dX = W^T dE/dY, dE/dW = dE/dY X^T, dE/db = rowSum) written
    per output position: each output pixel sends grad * w back onto its receptive field
    and grad * patch into the weight. Overlapping windows accumulate; the padding's
    share is cut away at the end.
    """
    x4, unbatched = _as_batch(x, "x")
    weight = np.asarray(weight)
    dtype = _float_dtype(x4)
    (sh, sw), (dh, dw), pad4, groups, oh, ow = _conv_geometry(x4, weight, stride, padding, dilation, groups)
    n, c_in, h, w = x4.shape
    c_out, c_in_g, kh, kw = weight.shape
    c_out_g = c_out // groups
    go = np.asarray(grad_out, _F64)
    if unbatched and go.ndim == 3:
        go = go[None]
    if go.shape != (n, c_out, oh, ow):
        raise ValueError(f"grad_out: expected shape {(n, c_out, oh, ow)}, got {go.shape}")
    xp = _pad(x4.astype(_F64), pad4)
    w64 = weight.astype(_F64)

    gxp = np.zeros_like(xp)
    gw = np.zeros_like(w64)
    for b in range(n):
        for o in range(c_out):
            g = o // c_out_g
            chans = slice(g * c_in_g, (g + 1) * c_in_g)
            for i in range(oh):
                for j in range(ow):
                    rows = slice(i * sh, i * sh + _span(kh, dh), dh)
                    cols = slice(j * sw, j * sw + _span(kw, dw), dw)
                    gy = go[b, o, i, j]
                    gxp[b, chans, rows, cols] += gy * w64[o]
                    gw[o] += gy * xp[b, chans, rows, cols]
    gb = go.sum(axis=(0, 2, 3))
    t, _, l, _ = pad4
    gx = gxp[:, :, t:t + h, l:l + w].astype(dtype)  # gradient w.r.t. the zero padding is not x's
    if unbatched:
        gx = gx[0]
    return (gx if need_grad_x else None), gw.astype(dtype), gb.astype(dtype)


# ============================================================================ transposed convolution
def _conv_transpose_geometry(x4, weight, stride, padding, output_padding, groups, dilation):
    """Parses the conv_transpose2d arguments; returns (stride, padding, output_padding, dilation, groups, OH, OW)."""
    n, c_in, h, w = x4.shape
    if weight.shape[0] != c_in:
        raise ValueError(f"weight {weight.shape}: dimension 0 must be C_in={c_in}")
    groups = operator.index(groups)
    _check_groups(c_in, weight.shape[1] * groups, groups)
    kh, kw = weight.shape[2:]
    if isinstance(padding, str):
        raise ValueError(f"padding: conv_transpose2d takes an int or a pair, got {padding!r}")
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    output_padding, dilation = _pair(output_padding, "output_padding"), _pair(dilation, "dilation")
    out = []
    for size, k, s, p, op, d in zip((h, w), (kh, kw), stride, padding, output_padding, dilation):
        # output_padding only disambiguates which of the input sizes that conv2d maps to the
        # same output size is meant, so it must stay below the stride (or the dilation).
        if op >= s and op >= d:
            raise ValueError(f"output_padding {output_padding} must be smaller than stride {stride} "
                             f"or dilation {dilation}")
        o = (size - 1) * s - 2 * p + d * (k - 1) + op + 1
        if o < 1:
            raise ValueError(f"conv_transpose2d output size {o} < 1 (input {size}, kernel {k}, stride {s}, "
                             f"padding {p}, dilation {d}, output_padding {op})")
        out.append(o)
    return stride, padding, output_padding, dilation, groups, out[0], out[1]


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed 2-D convolution (torch's conv_transpose2d).

    x (N, C_in, H, W) or (C_in, H, W); weight (C_in, C_out/groups, kh, kw); bias (C_out,) or None.
    Returns (N, C_out, OH, OW), OH = (H-1)*stride - 2*padding + dilation*(kh-1) + output_padding + 1.

    Written as a scatter over input positions, independent of conv2d_backward: input
    pixel (c, i, j) adds x * weight[c] onto the dilated window starting at (i*sh, j*sw)
    of a "full" output of size (H-1)*sh + dh*(kh-1) + 1 + output_padding; the result is
    that full output with `padding` rows/columns cut from each side (output_padding
    extends only the bottom/right, which is why the full output already includes it).
    """
    x4, unbatched = _as_batch(x, "x")
    weight = np.asarray(weight)
    dtype = _float_dtype(x4)
    (sh, sw), (ph, pw), (oph, opw), (dh, dw), groups, oh, ow = _conv_transpose_geometry(
        x4, weight, stride, padding, output_padding, groups, dilation)
    n, c_in, h, w = x4.shape
    _, c_out_g, kh, kw = weight.shape
    c_in_g, c_out = c_in // groups, c_out_g * groups
    x64, w64 = x4.astype(_F64), weight.astype(_F64)

    full = np.zeros((n, c_out, (h - 1) * sh + _span(kh, dh) + oph, (w - 1) * sw + _span(kw, dw) + opw))
    for b in range(n):
        for c in range(c_in):
            g = c // c_in_g
            outs = slice(g * c_out_g, (g + 1) * c_out_g)  # only the output channels of c's group
            for i in range(h):
                for j in range(w):
                    full[b, outs, i * sh: i * sh + _span(kh, dh): dh, j * sw: j * sw + _span(kw, dw): dw] \
                        += x64[b, c, i, j] * w64[c]
    y = full[:, :, ph:ph + oh, pw:pw + ow]
    if bias is not None:
        y = y + np.asarray(bias, _F64)[None, :, None, None]
    y = y.astype(dtype)
    return y[0] if unbatched else y


def conv_transpose2d_backward(grad_out, x, weight, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Gradients of conv_transpose2d: returns (grad_x, grad_weight, grad_bias).

    grad_out (N, C_out, OH, OW) (or unbatched with x); x, weight as given to conv_transpose2d.
    Shapes: x's, weight's, (C_out,).

    The forward scattered x[b, c, i, j] * weight[c] onto one window of the full output,
    so each input pixel gathers back: grad_x[b, c, i, j] = sum(grad_full[window] * weight[c]),
    and weight[c] collects x[b, c, i, j] * grad_full[window]. grad_full is grad_out placed
    at offset (padding) in a zero full-size array: the cropped border received no gradient.
    """
    x4, unbatched = _as_batch(x, "x")
    weight = np.asarray(weight)
    dtype = _float_dtype(x4)
    (sh, sw), (ph, pw), (oph, opw), (dh, dw), groups, oh, ow = _conv_transpose_geometry(
        x4, weight, stride, padding, output_padding, groups, dilation)
    n, c_in, h, w = x4.shape
    _, c_out_g, kh, kw = weight.shape
    c_in_g, c_out = c_in // groups, c_out_g * groups
    go = np.asarray(grad_out, _F64)
    if unbatched and go.ndim == 3:
        go = go[None]
    if go.shape != (n, c_out, oh, ow):
        raise ValueError(f"grad_out: expected shape {(n, c_out, oh, ow)}, got {go.shape}")
    x64, w64 = x4.astype(_F64), weight.astype(_F64)
    fh, fw = (h - 1) * sh + _span(kh, dh) + oph, (w - 1) * sw + _span(kw, dw) + opw
    # with padding > output_padding the full output is larger than padding + OH; otherwise equal
    gfull = np.zeros((n, c_out, max(fh, ph + oh), max(fw, pw + ow)))
    gfull[:, :, ph:ph + oh, pw:pw + ow] = go

    gx = np.zeros_like(x64)
    gw = np.zeros_like(w64)
    for b in range(n):
        for c in range(c_in):
            g = c // c_in_g
            outs = slice(g * c_out_g, (g + 1) * c_out_g)
            for i in range(h):
                for j in range(w):
                    win = gfull[b, outs, i * sh: i * sh + _span(kh, dh): dh, j * sw: j * sw + _span(kw, dw): dw]
                    gx[b, c, i, j] = np.sum(win * w64[c])
                    gw[c] += x64[b, c, i, j] * win
    gb = go.sum(axis=(0, 2, 3))
    gx = gx.astype(dtype)
    return (gx[0] if unbatched else gx), gw.astype(dtype), gb.astype(dtype)


# ============================================================================ im2col / col2im
def _window_geometry(size_hw, kernel_size, dilation, padding, stride):
    k, d = _pair(kernel_size, "kernel_size"), _pair(dilation, "dilation")
    p, s = _pair(padding, "padding"), _pair(stride, "stride")
    oh = _conv_out_size(size_hw[0], k[0], s[0], 2 * p[0], d[0])
    ow = _conv_out_size(size_hw[1], k[1], s[1], 2 * p[1], d[1])
    return k, d, p, s, oh, ow


def unfold(x, kernel_size, dilation=1, padding=0, stride=1):
    """im2col (torch's F.unfold): x (N, C, H, W) or (C, H, W) -> (N, C*kh*kw, L), L = OH*OW.

    Column l = i*OW + j holds the receptive field of output pixel (i, j), flattened in
    (c, ki, kj) order: the matrix X of seed 002 §5.6.5 (Fig. 5), whose product with the
    (C_out, C*kh*kw) weight matrix is the convolution, eq. (59).
    """
    x4, unbatched = _as_batch(x, "x")
    dtype = _float_dtype(x4)
    n, c, h, w = x4.shape
    (kh, kw), (dh, dw), (ph, pw), (sh, sw), oh, ow = _window_geometry((h, w), kernel_size, dilation, padding, stride)
    xp = _pad(x4.astype(_F64), (ph, ph, pw, pw))

    cols = np.zeros((n, c * kh * kw, oh * ow))
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                patch = xp[b, :, i * sh: i * sh + _span(kh, dh): dh, j * sw: j * sw + _span(kw, dw): dw]
                cols[b, :, i * ow + j] = patch.reshape(-1)  # C-order reshape gives the (c, ki, kj) row order
    cols = cols.astype(dtype)
    return cols[0] if unbatched else cols


def fold(cols, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """col2im (torch's F.fold): cols (N, C*kh*kw, L) or (C*kh*kw, L) -> (N, C, H, W), (H, W) = output_size.

    The adjoint of unfold: every column is put back onto its receptive field and
    overlapping fields are summed (which is why fold(unfold(x)) is not x).
    """
    cols = np.asarray(cols)
    dtype = _float_dtype(cols)
    unbatched = cols.ndim == 2
    c3 = cols[None] if unbatched else cols
    if c3.ndim != 3:
        raise ValueError(f"cols: expected (N, C*kh*kw, L) or (C*kh*kw, L), got shape {cols.shape}")
    h, w = _pair(output_size, "output_size")
    (kh, kw), (dh, dw), (ph, pw), (sh, sw), oh, ow = _window_geometry((h, w), kernel_size, dilation, padding, stride)
    n, ckk, length = c3.shape
    if ckk % (kh * kw):
        raise ValueError(f"cols: dimension 1 ({ckk}) must be divisible by kh*kw = {kh * kw}")
    if length != oh * ow:
        raise ValueError(f"cols: expected L = {oh}*{ow} = {oh * ow} blocks for output_size {(h, w)}, got {length}")
    c = ckk // (kh * kw)
    c64 = c3.astype(_F64)

    outp = np.zeros((n, c, h + 2 * ph, w + 2 * pw))
    for b in range(n):
        for i in range(oh):
            for j in range(ow):
                outp[b, :, i * sh: i * sh + _span(kh, dh): dh, j * sw: j * sw + _span(kw, dw): dw] \
                    += c64[b, :, i * ow + j].reshape(c, kh, kw)
    y = outp[:, :, ph:ph + h, pw:pw + w].astype(dtype)
    return y[0] if unbatched else y


# ============================================================================ pooling
def _pool_geometry(h, w, kernel_size, stride, padding, dilation, ceil_mode):
    """Parses pooling arguments; returns (k, s, p, d, OH, OW). stride None (or []) means kernel_size."""
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) else _pair(stride, "stride")
    p, d = _pair(padding, "padding"), _pair(dilation, "dilation")
    if 2 * p[0] > k[0] or 2 * p[1] > k[1]:
        # torch's rule: more padding than that could make a window all padding
        raise ValueError(f"padding {p} should be at most half of kernel_size {k}")
    oh = _pool_out_size(h, k[0], s[0], p[0], d[0], ceil_mode)
    ow = _pool_out_size(w, k[1], s[1], p[1], d[1], ceil_mode)
    return k, s, p, d, oh, ow


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max pooling (torch's F.max_pool2d). x (N, C, H, W) or (C, H, W) -> (N, C, OH, OW).

    Seed 002 eq. (63) with torch's stride/padding/dilation/ceil_mode:
        y[n, c, i, j] = max_{s, t} x[n, c, i*sh - ph + s*dh, j*sw - pw + t*dw]
    where positions outside the input count as -inf (implicit padding, never chosen).
    With return_indices also returns int64 indices h*W + w into each input plane.

    The window is scanned row-major and a value replaces the current maximum when it is
    strictly greater or NaN, exactly torch's CPU rule: the first of equal maxima wins,
    and NaN propagates (the last NaN in the window is the argmax). A window that lies
    wholly in the padding (possible with dilation) gives -inf and index -1 (pyconvnet's
    convention: torch returns an arbitrary index there); the backward skips it.
    """
    x4, unbatched = _as_batch(x, "x")
    dtype = _float_dtype(x4)
    n, c, h, w = x4.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), oh, ow = _pool_geometry(h, w, kernel_size, stride, padding, dilation,
                                                                    ceil_mode)
    x64 = x4.astype(_F64)

    y = np.empty((n, c, oh, ow))
    idx = np.empty((n, c, oh, ow), np.int64)
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                for j in range(ow):
                    best, arg = -np.inf, -1
                    for s in range(kh):
                        hh = i * sh - ph + s * dh
                        if not 0 <= hh < h:
                            continue
                        for t in range(kw):
                            ww = j * sw - pw + t * dw
                            if not 0 <= ww < w:
                                continue
                            v = x64[b, ch, hh, ww]
                            # the first real element starts the scan (so an all -inf window
                            # points at its first element, as torch); then strictly greater or NaN
                            if arg == -1 or v > best or np.isnan(v):
                                best, arg = v, hh * w + ww
                    y[b, ch, i, j], idx[b, ch, i, j] = best, arg
    y = y.astype(dtype)
    if unbatched:
        y, idx = y[0], idx[0]
    return (y, idx) if return_indices else y


def max_pool2d_backward(grad_out, indices, input_shape):
    """Gradient of max_pool2d: grad_x of ``input_shape`` ((N, C, H, W) or (C, H, W)).

    Seed 002 eq. (64): each output's gradient goes to the input element that was its
    maximum (``indices`` from max_pool2d(..., return_indices=True), flat h*W + w per
    plane); windows sharing an argmax add up. Index -1 (no argmax) contributes nothing.
    """
    go = np.asarray(grad_out)
    dtype = _float_dtype(go)
    indices = np.asarray(indices)
    shape = tuple(operator.index(v) for v in input_shape)
    unbatched = len(shape) == 3
    if unbatched:
        shape, go, indices = (1,) + shape, go[None], indices[None]
    if len(shape) != 4 or go.shape[:2] != shape[:2] or indices.shape != go.shape:
        raise ValueError(f"grad_out {go.shape} / indices {indices.shape} do not match input_shape {shape}")
    n, c, h, w = shape
    go64 = go.astype(_F64)

    gx = np.zeros((n, c, h * w))
    for b in range(n):
        for ch in range(c):
            for i in range(go.shape[2]):
                for j in range(go.shape[3]):
                    k = int(indices[b, ch, i, j])
                    if k >= 0:
                        gx[b, ch, k] += go64[b, ch, i, j]
    gx = gx.reshape(shape).astype(dtype)
    return gx[0] if unbatched else gx


def _avg_window(o, s, p, k, size, count_include_pad):
    """torch's avg-pool window along one axis: (start, end, divisor_factor).

    The window is first clipped to the *padded* input (end <= size + p; with ceil_mode
    the last window can run past it) - that length is the divisor with
    count_include_pad - and then to the real input, whose length is the divisor without."""
    start = o * s - p
    end = min(start + k, size + p)
    padded_len = end - start
    start, end = max(start, 0), min(end, size)
    return start, end, (padded_len if count_include_pad else end - start)


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling (torch's F.avg_pool2d). x (N, C, H, W) or (C, H, W) -> (N, C, OH, OW).

    y[n, c, i, j] = sum of the real input elements in the window / divisor, where the
    divisor is the window clipped to the padded input (count_include_pad=True: zero
    padding counts, ceil_mode overhang does not) or to the real input (False).
    """
    x4, unbatched = _as_batch(x, "x")
    dtype = _float_dtype(x4)
    n, c, h, w = x4.shape
    (kh, kw), (sh, sw), (ph, pw), _, oh, ow = _pool_geometry(h, w, kernel_size, stride, padding, 1, ceil_mode)
    x64 = x4.astype(_F64)

    y = np.zeros((n, c, oh, ow))
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                h0, h1, fh = _avg_window(i, sh, ph, kh, h, count_include_pad)
                for j in range(ow):
                    w0, w1, fw = _avg_window(j, sw, pw, kw, w, count_include_pad)
                    y[b, ch, i, j] = np.sum(x64[b, ch, h0:h1, w0:w1]) / (fh * fw)
    y = y.astype(dtype)
    return y[0] if unbatched else y


def avg_pool2d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True):
    """Gradient of avg_pool2d: grad_x of ``input_shape`` ((N, C, H, W) or (C, H, W)).

    Each output spreads grad / divisor evenly over the real input elements of its
    window (the same windows and divisors as the forward); overlaps add up.
    """
    go = np.asarray(grad_out)
    dtype = _float_dtype(go)
    shape = tuple(operator.index(v) for v in input_shape)
    unbatched = len(shape) == 3
    if unbatched:
        shape, go = (1,) + shape, go[None]
    n, c, h, w = shape
    (kh, kw), (sh, sw), (ph, pw), _, oh, ow = _pool_geometry(h, w, kernel_size, stride, padding, 1, ceil_mode)
    if go.shape != (n, c, oh, ow):
        raise ValueError(f"grad_out: expected shape {(n, c, oh, ow)}, got {go.shape}")
    go64 = go.astype(_F64)

    gx = np.zeros(shape)
    for b in range(n):
        for ch in range(c):
            for i in range(oh):
                h0, h1, fh = _avg_window(i, sh, ph, kh, h, count_include_pad)
                for j in range(ow):
                    w0, w1, fw = _avg_window(j, sw, pw, kw, w, count_include_pad)
                    gx[b, ch, h0:h1, w0:w1] += go64[b, ch, i, j] / (fh * fw)
    gx = gx.astype(dtype)
    return gx[0] if unbatched else gx


# ============================================================================ batch normalisation
def _channels_first(a):
    """(N, C, *spatial) -> (C, N*prod(spatial)) float64: one row per channel holding all
    the values its statistics are taken over (the B of seed 002 §5.3)."""
    a = np.asarray(a, _F64)
    return np.moveaxis(a, 1, 0).reshape(a.shape[1], -1)


def _from_channels_first(rows, shape):
    """Inverse of _channels_first."""
    return np.moveaxis(rows.reshape((shape[1], shape[0]) + tuple(shape[2:])), 0, 1)


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
               return_stats=False):
    """Batch normalisation (torch's F.batch_norm). x (N, C) or (N, C, *spatial) -> same shape.

    Statistics are per channel over all other axes (B = N * prod(spatial) values).
    weight (gamma) and bias (beta) are (C,) or None (gamma = 1, beta = 0).

    training=True, seed 002 eqs. (28)-(31): mu = mean, var = biased variance,
    xhat = (x - mu) / sqrt(var + eps), y = gamma * xhat + beta. running_mean /
    running_var (C,), when not None, are updated IN PLACE:
    running = (1 - momentum) * running + momentum * batch, with the unbiased variance
    var * B / (B - 1) for running_var (torch). B must be > 1 (torch raises otherwise).

    training=False, eq. (38): y = gamma / sqrt(Var + eps) * x + (beta - gamma * E / sqrt(Var + eps))
    with E, Var the running statistics.

    return_stats=True returns (y, mean, invstd), invstd = 1 / sqrt(var + eps): the batch
    (biased) statistics in training, the running ones in evaluation; all in x's dtype.
    """
    x = np.asarray(x)
    dtype = _float_dtype(x)
    if x.ndim < 2:
        raise ValueError(f"x: expected (N, C) or (N, C, *spatial), got shape {x.shape}")
    c = x.shape[1]
    rows = _channels_first(x)
    count = rows.shape[1]
    gamma = np.ones(c) if weight is None else np.asarray(weight, _F64)
    beta = np.zeros(c) if bias is None else np.asarray(bias, _F64)

    out = np.empty_like(rows)
    mean, invstd = np.empty(c), np.empty(c)
    if training:
        if count < 2:
            raise ValueError(f"Expected more than 1 value per channel when training, got input of shape {x.shape}")
        var = np.empty(c)
        for ch in range(c):
            xi = rows[ch]
            mean[ch] = np.sum(xi) / count                                   # eq. (28)
            var[ch] = np.sum((xi - mean[ch]) ** 2) / count                  # eq. (29), biased
            invstd[ch] = 1.0 / np.sqrt(var[ch] + eps)
            xhat = (xi - mean[ch]) * invstd[ch]                             # eq. (30)
            out[ch] = gamma[ch] * xhat + beta[ch]                           # eq. (31)
        if running_mean is not None:
            running_mean[...] = (1 - momentum) * np.asarray(running_mean, _F64) + momentum * mean
        if running_var is not None:
            # the running estimate is of the population variance, hence Bessel's correction
            running_var[...] = (1 - momentum) * np.asarray(running_var, _F64) + momentum * var * count / (count - 1)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("running_mean and running_var are required when training=False")
        e, v = np.asarray(running_mean, _F64), np.asarray(running_var, _F64)
        for ch in range(c):
            mean[ch] = e[ch]
            invstd[ch] = 1.0 / np.sqrt(v[ch] + eps)
            scale = gamma[ch] * invstd[ch]
            out[ch] = scale * rows[ch] + (beta[ch] - scale * e[ch])         # eq. (38)
    y = _from_channels_first(out, x.shape).astype(dtype)
    if return_stats:
        return y, mean.astype(dtype), invstd.astype(dtype)
    return y


def batch_norm_backward(grad_out, x, weight, mean, invstd):
    """Training-mode batch-norm gradient: returns (grad_x, grad_weight, grad_bias).

    grad_out, x (N, C) or (N, C, *spatial); weight (C,) or None (gamma = 1); mean, invstd
    (C,) the batch statistics from batch_norm(..., training=True, return_stats=True).
    grad_x has x's shape; grad_weight and grad_bias are (C,) (returned even when weight
    is None). Seed 002 eqs. (32)-(37), per channel, with 1/sqrt(var + eps) = invstd and
    B = N * prod(spatial):
        dxhat = dy * gamma                                                        (32)
        dvar  = sum(dxhat * (x - mu)) * (-1/2) * invstd^3                         (33)
        dmu   = sum(dxhat * (-invstd)) + dvar * sum(-2 (x - mu)) / B              (34)
        dx    = dxhat * invstd + dvar * 2 (x - mu) / B + dmu / B                  (35)
        dgamma = sum(dy * xhat), dbeta = sum(dy)                                  (36), (37)
    """
    x = np.asarray(x)
    dtype = _float_dtype(x)
    if x.ndim < 2:
        raise ValueError(f"x: expected (N, C) or (N, C, *spatial), got shape {x.shape}")
    if np.shape(grad_out) != x.shape:
        raise ValueError(f"grad_out: expected the shape of x {x.shape}, got {np.shape(grad_out)}")
    c = x.shape[1]
    rows, dys = _channels_first(x), _channels_first(grad_out)
    count = rows.shape[1]
    gamma = np.ones(c) if weight is None else np.asarray(weight, _F64)
    mu, inv = np.asarray(mean, _F64), np.asarray(invstd, _F64)

    dx = np.empty_like(rows)
    dgamma, dbeta = np.empty(c), np.empty(c)
    for ch in range(c):
        xc = rows[ch] - mu[ch]
        dy = dys[ch]
        dxhat = dy * gamma[ch]                                                           # (32)
        dvar = np.sum(dxhat * xc) * -0.5 * inv[ch] ** 3                                  # (33)
        dmu = np.sum(dxhat * -inv[ch]) + dvar * np.sum(-2.0 * xc) / count                # (34)
        dx[ch] = dxhat * inv[ch] + dvar * 2.0 * xc / count + dmu / count                 # (35)
        dgamma[ch] = np.sum(dy * xc * inv[ch])                                           # (36)
        dbeta[ch] = np.sum(dy)                                                           # (37)
    return _from_channels_first(dx, x.shape).astype(dtype), dgamma.astype(dtype), dbeta.astype(dtype)


# ============================================================================ linear / relu
def linear(x, weight, bias=None):
    """Fully connected layer (torch's F.linear): y = x W^T + b.

    x (..., in_features); weight (out_features, in_features); bias (out_features,) or None.
    Returns (..., out_features): y[r, o] = sum_k x[r, k] * W[o, k] + b[o] for each row r.
    """
    x = np.asarray(x)
    dtype = _float_dtype(x)
    weight = np.asarray(weight, _F64)
    out_f, in_f = weight.shape
    if x.ndim < 1 or x.shape[-1] != in_f:
        raise ValueError(f"x {x.shape}: last dimension must be in_features = {in_f}")
    xr = x.reshape(-1, in_f).astype(_F64)
    b = np.zeros(out_f) if bias is None else np.asarray(bias, _F64)
    y = np.empty((xr.shape[0], out_f))
    for r in range(xr.shape[0]):
        for o in range(out_f):
            y[r, o] = np.sum(xr[r] * weight[o]) + b[o]
    return y.reshape(x.shape[:-1] + (out_f,)).astype(dtype)


def linear_backward(grad_out, x, weight, *, need_grad_x=True):
    """Gradients of linear: (grad_x, grad_weight, grad_bias) shaped like x, weight and (out_features,).

    dE/dx = dE/dy W, dE/dW = sum over rows of dE/dy^T x, dE/db = sum over rows of dE/dy.
    grad_x is None when need_grad_x=False.
    """
    x = np.asarray(x)
    dtype = _float_dtype(x)
    weight = np.asarray(weight, _F64)
    out_f, in_f = weight.shape
    xr = x.reshape(-1, in_f).astype(_F64)
    gy = np.asarray(grad_out, _F64).reshape(-1, out_f)
    if gy.shape[0] != xr.shape[0]:
        raise ValueError(f"grad_out {np.shape(grad_out)} does not match x {x.shape} and weight {weight.shape}")
    gx = np.zeros_like(xr)
    gw = np.zeros_like(weight)
    for r in range(xr.shape[0]):
        for o in range(out_f):
            gx[r] += gy[r, o] * weight[o]
            gw[o] += gy[r, o] * xr[r]
    gb = gy.sum(axis=0)
    gx = gx.reshape(x.shape).astype(dtype) if need_grad_x else None
    return gx, gw.astype(dtype), gb.astype(dtype)


def relu(x):
    """max(x, 0) elementwise; any shape. NaN stays NaN (as torch)."""
    x = np.asarray(x)
    return np.where(x > 0, x, np.where(np.isnan(x), x, 0)).astype(_float_dtype(x))


def relu_backward(grad_out, y):
    """Gradient of relu given its output y: grad_out where y > 0, else 0."""
    y = np.asarray(y)
    return np.where(y > 0, np.asarray(grad_out), 0).astype(_float_dtype(y))


# seed 003: the naive loops of the relaxed receptive-field convolution live beside
# its kernels (pyconvnet/relaxed.py); they are plain NumPy loops like the above.
from .relaxed import ref_receptive_conv as receptive_conv  # noqa: E402
from .relaxed import ref_receptive_conv_backward as receptive_conv_backward  # noqa: E402
from .relaxed import ref_relaxed_conv as relaxed_conv  # noqa: E402
from .relaxed import ref_relaxed_conv_backward as relaxed_conv_backward  # noqa: E402

__all__ += ["relaxed_conv", "relaxed_conv_backward", "receptive_conv", "receptive_conv_backward"]
