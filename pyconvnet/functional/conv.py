"""Convolutions: conv2d, conv_transpose2d, unfold / fold (im2col / col2im), output sizes."""
from __future__ import annotations

from .. import _core
from .._args import as_int, batched, check_ndim, float_array, out_array, pair

__all__ = ["conv2d", "conv2d_backward", "conv_transpose2d", "conv_transpose2d_backward", "unfold", "fold", "conv2d_output_size"]


# ----------------------------------------------------------------- shapes
def conv2d_output_size(in_size, kernel_size, stride=1, padding=0, dilation=1):
    """(OH, OW) of a convolution with symmetric integer padding (the C++ formula)."""
    (h, w), (kh, kw) = pair(in_size, "in_size", 0), pair(kernel_size, "kernel_size", 1)
    (sh, sw), (ph, pw), (dh, dw) = pair(stride, "stride", 1), pair(padding, "padding", 0), pair(dilation, "dilation", 1)
    return (_core.conv_out_size(h, kh, sh, 2 * ph, dh), _core.conv_out_size(w, kw, sw, 2 * pw, dw))


# The bundled OpenBLAS takes 32-bit sizes (csrc/bind/checks.h, check_blas_size).
_BLAS_MAX = 2**31 - 2


def _check_columns(rows, out, bare, padding, x_shape, what="the im2col buffer"):
    """Refuses a column buffer (rows x OH*OW, ``out`` = (OH, OW)) larger than the 32-bit BLAS
    takes, naming the argument that made it so: ``padding`` when the output without it
    (``bare``) would fit, else x."""
    oh, ow = out
    if rows * oh * ow <= _BLAS_MAX:
        return
    if rows * max(bare[0], 1) * max(bare[1], 1) <= _BLAS_MAX:
        raise ValueError(f"padding: {padding} makes the output {oh}x{ow} for x {tuple(x_shape)}, and {what} "
                         f"({rows} x {oh * ow} = {rows * oh * ow} values) is more than the 32-bit BLAS takes "
                         f"(at most {_BLAS_MAX}); use a smaller padding")
    raise ValueError(f"x: an input of shape {tuple(x_shape)} makes {what} {rows} x {oh * ow} = {rows * oh * ow} "
                     f"values, more than the 32-bit BLAS takes (at most {_BLAS_MAX}); use smaller images")


def _conv_padding(padding, kernel, stride, dilation):
    """Padding as (top, bottom, left, right); 'same' puts the odd extra at the end (torch)."""
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"padding: 'same' is not supported for strided convolutions (stride={stride})")
            pads = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]
            return tuple(pads)
        raise ValueError(f"padding: expected an int, a pair, 'valid' or 'same', got {padding!r}")
    if isinstance(padding, (tuple, list)) and len(padding) == 4:
        # (top, bottom, left, right): asymmetric padding (ONNX pads, TF 'SAME' with stride) without a pad pass
        return tuple(pair((v, v), "padding", 0)[0] for v in padding)
    ph, pw = pair(padding, "padding", 0)
    return (ph, ph, pw, pw)


def _check_conv(x, weight, bias, stride, padding, dilation, groups):
    """Validates a conv2d call; returns (x4, w, bias, unbatched, stride, pad4, dilation, groups)."""
    x = float_array(x, "x")
    x, unbatched = batched(x, "x")
    weight = float_array(weight, "weight", x.dtype)
    check_ndim(weight, "weight", 4, "(C_out, C_in/groups, kh, kw)")
    groups = as_int(groups, "groups")
    if groups < 1:
        raise ValueError(f"groups: expected a positive int, got {groups}")
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    if groups > c:
        raise ValueError(f"groups: {groups} is more than the {c} input channels of x {x.shape}")
    if c % groups:
        raise ValueError(f"groups: {groups} does not divide the {c} input channels of x {x.shape}")
    if o % groups:
        raise ValueError(f"groups: {groups} does not divide the {o} output channels of weight {weight.shape}")
    if cg * groups != c:
        raise ValueError(
            f"weight: expected shape ({o}, {c // groups}, kh, kw) for x with {c} channels and groups={groups}, "
            f"got {weight.shape}")
    if kh < 1 or kw < 1:
        raise ValueError(f"weight: kernel dimensions must be positive, got shape {weight.shape}")
    stride = pair(stride, "stride", 1)
    dilation = pair(dilation, "dilation", 1)
    pad = _conv_padding(padding, (kh, kw), stride, dilation)
    eh, ew = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    if eh > h + pad[0] + pad[1] or ew > w + pad[2] + pad[3]:
        raise ValueError(
            f"weight: kernel ({kh}, {kw}) with dilation {dilation} spans ({eh}, {ew}), larger than the padded "
            f"input ({h + pad[0] + pad[1]}, {w + pad[2] + pad[3]}) of x {x.shape}")
    out = (_core.conv_out_size(h, kh, stride[0], pad[0] + pad[1], dilation[0]),
           _core.conv_out_size(w, kw, stride[1], pad[2] + pad[3], dilation[1]))
    bare = ((h - eh) // stride[0] + 1, (w - ew) // stride[1] + 1)
    _check_columns(cg * kh * kw, out, bare, padding, x.shape)
    if bias is not None:
        bias = float_array(bias, "bias", x.dtype)
        if bias.shape != (o,):
            raise ValueError(f"bias: expected shape ({o},), got {bias.shape}")
    return x, weight, bias, unbatched, stride, pad, dilation, groups


# ----------------------------------------------------------------- convolution
def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as torch).

    x (N, C_in, H, W) or (C_in, H, W); weight (C_out, C_in/groups, kh, kw); bias (C_out,).
    padding: int, pair, 'valid', 'same' (stride 1) or a 4-tuple (top, bottom, left, right).
    Returns (N, C_out, OH, OW).
    """
    x, weight, bias, unb, stride, pad, dilation, groups = _check_conv(x, weight, bias, stride, padding, dilation, groups)
    y = _core.conv2d_forward(x, weight, bias, stride, pad, dilation, groups)
    return y[0] if unb else y


def conv2d_backward(grad_out, x, weight, stride=1, padding=0, dilation=1, groups=1, *, need_grad_x=True,
                    need_grad_bias=True, grad_weight_out=None, grad_bias_out=None):
    """Gradients of conv2d: returns (grad_x, grad_weight, grad_bias) shaped like x, weight and (C_out,).

    need_grad_x=False skips grad_x (returned as None): a network's first layer needs no input gradient.
    need_grad_bias=False skips grad_bias (None): a conv without bias (before batch norm) has none.
    grad_weight_out / grad_bias_out: arrays to write those gradients into (overwritten, and
    returned), e.g. a layer's own gradient buffers, saving an allocation and a copy."""
    x, weight, _, unb, stride, pad, dilation, groups = _check_conv(x, weight, None, stride, padding, dilation, groups)
    grad_out = float_array(grad_out, "grad_out", x.dtype)
    if unb:
        check_ndim(grad_out, "grad_out", 3, "(C_out, OH, OW) for an unbatched x")
        grad_out = grad_out[None]
    oh = _core.conv_out_size(x.shape[2], weight.shape[2], stride[0], pad[0] + pad[1], dilation[0])
    ow = _core.conv_out_size(x.shape[3], weight.shape[3], stride[1], pad[2] + pad[3], dilation[1])
    want = (x.shape[0], weight.shape[0], oh, ow)
    if grad_out.shape != want:
        raise ValueError(f"grad_out: expected shape {want} (the output of conv2d), got {grad_out.shape}")
    gw_out = out_array(grad_weight_out, "grad_weight_out", weight.shape, x.dtype, grad_out, x, weight)
    gb_out = out_array(grad_bias_out, "grad_bias_out", (weight.shape[0],), x.dtype, grad_out, x, weight, gw_out)
    gx, gw, gb = _core.conv2d_backward(grad_out, x, weight, stride, pad, dilation, groups, bool(need_grad_x), True,
                                       bool(need_grad_bias), gw_out, gb_out)
    return (gx[0] if unb and gx is not None else gx), gw, gb


def _check_conv_transpose(x, weight, bias, stride, padding, output_padding, groups, dilation):
    x = float_array(x, "x")
    x, unbatched = batched(x, "x")
    weight = float_array(weight, "weight", x.dtype)
    check_ndim(weight, "weight", 4, "(C_in, C_out/groups, kh, kw)")
    groups = as_int(groups, "groups")
    if groups < 1:
        raise ValueError(f"groups: expected a positive int, got {groups}")
    n, c, h, w = x.shape
    if weight.shape[0] != c:
        raise ValueError(f"weight: expected shape ({c}, C_out/groups, kh, kw) for x with {c} channels, got {weight.shape}")
    if c % groups:
        raise ValueError(f"groups: {groups} does not divide the {c} input channels of x {x.shape}")
    if weight.shape[2] < 1 or weight.shape[3] < 1 or weight.shape[1] < 1:
        raise ValueError(f"weight: dimensions must be positive, got shape {weight.shape}")
    if isinstance(padding, str):
        raise ValueError(f"padding: conv_transpose2d takes an int or a pair, got {padding!r}")
    stride = pair(stride, "stride", 1)
    padding = pair(padding, "padding", 0)
    output_padding = pair(output_padding, "output_padding", 0)
    dilation = pair(dilation, "dilation", 1)
    for i in range(2):
        if output_padding[i] >= stride[i] and output_padding[i] >= dilation[i]:
            raise ValueError(f"output_padding: must be smaller than stride or dilation, got output_padding="
                             f"{output_padding}, stride={stride}, dilation={dilation}")
    out = tuple(_core.conv_transpose_out_size(s, k, st, p, d, op) for s, k, st, p, d, op in
                zip((h, w), weight.shape[2:], stride, padding, dilation, output_padding))
    if min(out) < 1:
        raise ValueError(f"padding: {padding} leaves a non-positive output size {out} for x {x.shape}")
    c_out = weight.shape[1] * groups
    if bias is not None:
        bias = float_array(bias, "bias", x.dtype)
        if bias.shape != (c_out,):
            raise ValueError(f"bias: expected shape ({c_out},), got {bias.shape}")
    return x, weight, bias, unbatched, stride, padding, output_padding, groups, dilation, (n, c_out) + out


def conv_transpose2d(x, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Transposed 2-D convolution (the gradient of conv2d with respect to its input).

    x (N, C_in, H, W); weight (C_in, C_out/groups, kh, kw); bias (C_out,).
    Output (N, C_out, (H-1)*stride - 2*padding + dilation*(kh-1) + output_padding + 1, ...).
    """
    x, weight, bias, unb, s, p, op, g, d, _ = _check_conv_transpose(x, weight, bias, stride, padding, output_padding,
                                                                    groups, dilation)
    y = _core.conv_transpose2d_forward(x, weight, bias, s, p, op, d, g)
    return y[0] if unb else y


def conv_transpose2d_backward(grad_out, x, weight, stride=1, padding=0, output_padding=0, groups=1, dilation=1, *,
                              need_grad_x=True):
    """Gradients of conv_transpose2d: (grad_x, grad_weight, grad_bias); grad_x is None when
    ``need_grad_x`` is False (its convolution is skipped)."""
    x, weight, _, unb, s, p, op, g, d, want = _check_conv_transpose(x, weight, None, stride, padding, output_padding,
                                                                    groups, dilation)
    grad_out = float_array(grad_out, "grad_out", x.dtype)
    if unb:
        grad_out = grad_out[None] if grad_out.ndim == 3 else grad_out
    if grad_out.shape != want:
        raise ValueError(f"grad_out: expected shape {want} (the output of conv_transpose2d), got {grad_out.shape}")
    gx, gw, gb = _core.conv_transpose2d_backward(grad_out, x, weight, s, p, op, d, g, bool(need_grad_x))
    return (gx if gx is None or not unb else gx[0]), gw, gb


# ----------------------------------------------------------------- im2col
def _window_args(kernel_size, dilation, padding, stride):
    return (pair(kernel_size, "kernel_size", 1), pair(dilation, "dilation", 1), pair(padding, "padding", 0),
            pair(stride, "stride", 1))


def unfold(x, kernel_size, dilation=1, padding=0, stride=1):
    """im2col: x (N, C, H, W) -> (N, C*kh*kw, L), rows in (c, ki, kj) order, L = OH*OW."""
    x = float_array(x, "x")
    x, unb = batched(x, "x")
    k, d, p, s = _window_args(kernel_size, dilation, padding, stride)
    oh = _core.conv_out_size(x.shape[2], k[0], s[0], 2 * p[0], d[0])
    ow = _core.conv_out_size(x.shape[3], k[1], s[1], 2 * p[1], d[1])
    if oh < 1 or ow < 1:
        raise ValueError(f"kernel_size: {k} with dilation {d} is larger than the padded input "
                         f"({x.shape[2] + 2 * p[0]}, {x.shape[3] + 2 * p[1]}) of x {x.shape}")
    bare = [(n - d_ * (k_ - 1) - 1) // s_ + 1 for n, k_, d_, s_ in zip(x.shape[2:], k, d, s)]
    _check_columns(x.shape[1] * k[0] * k[1], (oh, ow), bare, padding, x.shape, "the column buffer")
    y = _core.unfold(x, k, d, p, s)
    return y[0] if unb else y


def fold(cols, output_size, kernel_size, dilation=1, padding=0, stride=1):
    """col2im: cols (N, C*kh*kw, L) -> (N, C, H, W), summing overlapping blocks."""
    cols = float_array(cols, "cols")
    check_ndim(cols, "cols", (2, 3), "(N, C*kh*kw, L) or (C*kh*kw, L)")
    unb = cols.ndim == 2
    if unb:
        cols = cols[None]
    out = pair(output_size, "output_size", 1)
    k, d, p, s = _window_args(kernel_size, dilation, padding, stride)
    if cols.shape[1] % (k[0] * k[1]):
        raise ValueError(f"cols: dimension 1 ({cols.shape[1]}) must be divisible by kh*kw = {k[0] * k[1]}, "
                         f"got shape {cols.shape}")
    oh = _core.conv_out_size(out[0], k[0], s[0], 2 * p[0], d[0])
    ow = _core.conv_out_size(out[1], k[1], s[1], 2 * p[1], d[1])
    if oh < 1 or ow < 1:
        raise ValueError(f"kernel_size: {k} with dilation {d} is larger than the padded output_size {out}")
    if cols.shape[2] != oh * ow:
        raise ValueError(f"cols: expected {oh * ow} blocks in dimension 2 for output_size {out}, got shape {cols.shape}")
    y = _core.fold(cols, out, k, d, p, s)
    return y[0] if unb else y
