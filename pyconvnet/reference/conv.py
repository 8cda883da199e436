"""Naive convolutions: conv2d, conv_transpose2d, unfold / fold (Kyoto Univ. exercise §5.6, eqs. 56-62)."""
from __future__ import annotations

import operator

import numpy as np

from ._common import _F64, _as_batch, _conv_out_size, _conv_pad4, _float_dtype, _pad, _pair, _span

__all__ = ["conv2d", "conv2d_backward", "conv_transpose2d", "conv_transpose2d_backward", "unfold", "fold"]


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

    The Kyoto Univ. exercise's eqs. (56)-(58), with torch's stride/dilation/groups:
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

    The Kyoto Univ. exercise's eqs. (60)-(62) (dE/dX = W^T dE/dY, dE/dW = dE/dY X^T, dE/db = rowSum) written
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
    (c, ki, kj) order: the matrix X of Kyoto Univ. exercise §5.6.5 (Fig. 5), whose product with the
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
