"""NumPy-in, NumPy-out neural-network functions backed by the C++ kernels.

Forward signatures and semantics follow ``torch.nn.functional``; each forward
has an explicit ``*_backward`` since there is no autograd. Layout is NCHW;
float32 and float64 are supported and the output has the input's dtype. Any
array-like is accepted (non-contiguous arrays are copied once); inputs are never
modified, except the running statistics that ``batch_norm`` updates in place.
"""
from __future__ import annotations

import numpy as np

from . import _core
from ._args import as_float, as_int, batched, check_ndim, float_array, out_array, pair

__all__ = [
    "conv2d", "conv2d_backward", "conv_transpose2d", "conv_transpose2d_backward",
    "unfold", "fold", "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "batch_norm", "batch_norm_backward", "linear", "linear_backward", "relu", "relu_backward",
    "sigmoid", "sigmoid_backward", "dropout", "dropout_backward",
    "conv2d_output_size", "pool2d_output_size",
]


# ----------------------------------------------------------------- shapes
def conv2d_output_size(in_size, kernel_size, stride=1, padding=0, dilation=1):
    """(OH, OW) of a convolution with symmetric integer padding (the C++ formula)."""
    (h, w), (kh, kw) = pair(in_size, "in_size", 0), pair(kernel_size, "kernel_size", 1)
    (sh, sw), (ph, pw), (dh, dw) = pair(stride, "stride", 1), pair(padding, "padding", 0), pair(dilation, "dilation", 1)
    return (_core.conv_out_size(h, kh, sh, 2 * ph, dh), _core.conv_out_size(w, kw, sw, 2 * pw, dw))


def pool2d_output_size(in_size, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """(OH, OW) of a pooling window (torch's rule, including ceil_mode)."""
    (h, w), (kh, kw) = pair(in_size, "in_size", 0), pair(kernel_size, "kernel_size", 1)
    (sh, sw) = pair(kernel_size if stride is None else stride, "stride", 1)
    (ph, pw), (dh, dw) = pair(padding, "padding", 0), pair(dilation, "dilation", 1)
    return (_core.pool_out_size(h, kh, sh, ph, dh, bool(ceil_mode)), _core.pool_out_size(w, kw, sw, pw, dw, bool(ceil_mode)))


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
    if bias is not None:
        bias = float_array(bias, "bias", x.dtype)
        if bias.shape != (o,):
            raise ValueError(f"bias: expected shape ({o},), got {bias.shape}")
    return x, weight, bias, unbatched, stride, pad, dilation, groups


# ----------------------------------------------------------------- convolution
def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as torch).

    x (N, C_in, H, W) or (C_in, H, W); weight (C_out, C_in/groups, kh, kw); bias (C_out,).
    padding: int, pair, 'valid' or 'same' (stride 1). Returns (N, C_out, OH, OW).
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


def conv_transpose2d_backward(grad_out, x, weight, stride=1, padding=0, output_padding=0, groups=1, dilation=1):
    """Gradients of conv_transpose2d: (grad_x, grad_weight, grad_bias)."""
    x, weight, _, unb, s, p, op, g, d, want = _check_conv_transpose(x, weight, None, stride, padding, output_padding,
                                                                    groups, dilation)
    grad_out = float_array(grad_out, "grad_out", x.dtype)
    if unb:
        grad_out = grad_out[None] if grad_out.ndim == 3 else grad_out
    if grad_out.shape != want:
        raise ValueError(f"grad_out: expected shape {want} (the output of conv_transpose2d), got {grad_out.shape}")
    gx, gw, gb = _core.conv_transpose2d_backward(grad_out, x, weight, s, p, op, d, g)
    return (gx[0] if unb else gx), gw, gb


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


# ----------------------------------------------------------------- pooling
def _pool_args(x, kernel_size, stride, padding, dilation, ceil_mode):
    x = float_array(x, "x")
    x, unb = batched(x, "x")
    return (x, unb) + _pool_geometry(x.shape, kernel_size, stride, padding, dilation, ceil_mode)


def _pool_geometry(shape, kernel_size, stride, padding, dilation, ceil_mode):
    k = pair(kernel_size, "kernel_size", 1)
    s = k if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) else pair(stride, "stride", 1)
    p = pair(padding, "padding", 0)
    d = pair(dilation, "dilation", 1)
    if 2 * p[0] > k[0] or 2 * p[1] > k[1]:
        raise ValueError(f"padding: should be at most half of kernel_size, got padding={p}, kernel_size={k}")
    out = pool2d_output_size(shape[-2:], k, s, p, d, ceil_mode)
    if min(out) < 1:
        raise ValueError(f"kernel_size: window {k} (dilation {d}) is larger than the padded input "
                         f"({shape[-2] + 2 * p[0]}, {shape[-1] + 2 * p[1]}) of shape {tuple(shape)}")
    return k, s, p, d, bool(ceil_mode)


def _input_shape(input_shape, name="input_shape"):
    try:
        shape = tuple(as_int(v, name) for v in input_shape)
    except TypeError:
        raise TypeError(f"{name}: expected a tuple of ints, got {input_shape!r}") from None
    if len(shape) not in (3, 4) or min(shape) < 0:
        raise ValueError(f"{name}: expected (N, C, H, W) or (C, H, W) with non-negative sizes, got {input_shape!r}")
    return shape


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max pooling. x (N, C, H, W) -> (N, C, OH, OW); with return_indices also int64 flat
    indices h*W + w into each input plane (first maximum wins; NaN counts as maximum)."""
    x, unb, k, s, p, d, ceil_mode = _pool_args(x, kernel_size, stride, padding, dilation, ceil_mode)
    y, idx = _core.max_pool2d_forward(x, k, s, p, d, ceil_mode)
    if unb:
        y, idx = y[0], idx[0]
    return (y, idx) if return_indices else y


def max_pool2d_backward(grad_out, indices, input_shape):
    """Routes grad_out (N, C, OH, OW) to the argmax positions given by ``indices``; returns grad_x of input_shape."""
    shape = _input_shape(input_shape)
    grad_out = float_array(grad_out, "grad_out")
    indices = np.asarray(indices)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"indices: expected an integer array (as max_pool2d returns), got dtype {indices.dtype}")
    if grad_out.ndim != len(shape) or grad_out.shape[:-2] != shape[:-2]:
        raise ValueError(f"grad_out: expected shape {shape[:-2] + ('OH', 'OW')} for input_shape {shape}, "
                         f"got {grad_out.shape}")
    if indices.shape != grad_out.shape:
        raise ValueError(f"indices: expected shape {grad_out.shape} (that of grad_out), got {indices.shape}")
    unb = len(shape) == 3
    if unb:
        shape, grad_out, indices = (1,) + shape, grad_out[None], indices[None]
    # the values' range is checked in C++ (one pass, no min/max temporaries)
    gx = _core.max_pool2d_backward(grad_out, indices.astype(np.int64, copy=False), shape)
    return gx[0] if unb else gx


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """Average pooling (torch's divisor rules for padding and ceil_mode). x (N, C, H, W) -> (N, C, OH, OW)."""
    x, unb, k, s, p, _, ceil_mode = _pool_args(x, kernel_size, stride, padding, 1, ceil_mode)
    y = _core.avg_pool2d_forward(x, k, s, p, ceil_mode, bool(count_include_pad))
    return y[0] if unb else y


def avg_pool2d_backward(grad_out, input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
                        count_include_pad=True):
    """Gradient of avg_pool2d with respect to its input, shaped ``input_shape``."""
    shape = _input_shape(input_shape)
    grad_out = float_array(grad_out, "grad_out")
    k, s, p, _, ceil_mode = _pool_geometry(shape, kernel_size, stride, padding, 1, ceil_mode)
    unb = len(shape) == 3
    out = pool2d_output_size(shape[-2:], k, s, p, 1, ceil_mode)
    want = tuple(shape[:-2]) + out
    if grad_out.shape != want:
        raise ValueError(f"grad_out: expected shape {want} (the output of avg_pool2d), got {grad_out.shape}")
    full = (1,) + shape if unb else shape
    gx = _core.avg_pool2d_backward(grad_out.reshape(full[:2] + out), full, k, s, p, ceil_mode, bool(count_include_pad))
    return gx[0] if unb else gx


# ----------------------------------------------------------------- batch norm
def _channel_vector(v, name, c, dtype, allow_none=True):
    if v is None:
        if allow_none:
            return None
        raise ValueError(f"{name}: required, got None")
    v = float_array(v, name, dtype)
    if v.shape != (c,):
        raise ValueError(f"{name}: expected shape ({c},) (one value per channel), got {v.shape}")
    return v


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5,
               return_stats=False):
    """Batch normalisation over x (N, C) or (N, C, *spatial), statistics per channel.

    training=True normalises with the batch statistics and, when given, updates
    running_mean/running_var in place: r = (1 - momentum) * r + momentum * batch,
    with the unbiased batch variance for running_var (as torch).
    training=False normalises with the running statistics.
    return_stats=True returns (y, mean, invstd) with invstd = 1/sqrt(var + eps):
    what batch_norm_backward needs.
    """
    x = float_array(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x: expected (N, C) or (N, C, *spatial), got shape {x.shape}")
    c = x.shape[1]
    weight = _channel_vector(weight, "weight", c, x.dtype)
    bias = _channel_vector(bias, "bias", c, x.dtype)
    eps = as_float(eps, "eps")
    if not eps > 0:
        raise ValueError(f"eps: expected a positive float, got {eps}")
    if training:
        count = x.size // c if c else 0
        if count < 2:
            raise ValueError(f"x: training batch norm needs more than 1 value per channel, got shape {x.shape}")
        for name, r in (("running_mean", running_mean), ("running_var", running_var)):
            if r is not None:
                if not isinstance(r, np.ndarray) or r.dtype.kind != "f" or not r.flags.writeable:
                    raise TypeError(f"{name}: must be a writable float ndarray (it is updated in place), "
                                    f"got {type(r).__name__}")
                if r.shape != (c,):
                    raise ValueError(f"{name}: expected shape ({c},), got {r.shape}")
        momentum = as_float(momentum, "momentum")
        y, mean, var, invstd = _core.batch_norm_train(x, weight, bias, eps)
        if running_mean is not None:
            running_mean *= 1.0 - momentum
            running_mean += momentum * mean
        if running_var is not None:
            running_var *= 1.0 - momentum
            running_var += (momentum * count / (count - 1)) * var
        return (y, mean, invstd) if return_stats else y
    mean = _channel_vector(running_mean, "running_mean", c, x.dtype, allow_none=False)
    var = _channel_vector(running_var, "running_var", c, x.dtype, allow_none=False)
    y = _core.batch_norm_eval(x, mean, var, weight, bias, eps)
    if return_stats:
        return y, mean.copy(), (1.0 / np.sqrt(var.astype(np.float64) + eps)).astype(x.dtype)
    return y


def batch_norm_backward(grad_out, x, weight, mean, invstd):
    """Training-mode batch-norm gradient (seed 002 eqs. 32-37).

    grad_out, x: (N, C, *spatial); weight (C,) or None (= ones); mean, invstd (C,) from
    batch_norm(..., training=True, return_stats=True). Returns (grad_x, grad_weight, grad_bias).
    """
    x = float_array(x, "x")
    if x.ndim < 2:
        raise ValueError(f"x: expected (N, C) or (N, C, *spatial), got shape {x.shape}")
    grad_out = float_array(grad_out, "grad_out", x.dtype)
    if grad_out.shape != x.shape:
        raise ValueError(f"grad_out: expected the shape of x {x.shape}, got {grad_out.shape}")
    c = x.shape[1]
    weight = _channel_vector(weight, "weight", c, x.dtype)
    mean = _channel_vector(mean, "mean", c, x.dtype, allow_none=False)
    invstd = _channel_vector(invstd, "invstd", c, x.dtype, allow_none=False)
    return _core.batch_norm_backward(grad_out, x, weight, mean, invstd)


# ----------------------------------------------------------------- linear
def linear(x, weight, bias=None):
    """y = x @ weight.T + bias. x (..., in), weight (out, in), bias (out,) -> (..., out)."""
    x = float_array(x, "x")
    weight = float_array(weight, "weight", x.dtype)
    check_ndim(weight, "weight", 2, "(out_features, in_features)")
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"x: expected last dimension {weight.shape[1]} (in_features of weight {weight.shape}), "
                         f"got shape {x.shape}")
    if bias is not None:
        bias = float_array(bias, "bias", x.dtype)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"bias: expected shape ({weight.shape[0]},), got {bias.shape}")
    y = _core.linear_forward(x.reshape(-1, x.shape[-1]), weight, bias)
    return y.reshape(x.shape[:-1] + (weight.shape[0],))


def linear_backward(grad_out, x, weight, *, need_grad_x=True, grad_weight_out=None, grad_bias_out=None):
    """Gradients of linear: (grad_x, grad_weight, grad_bias); grad_x is None when need_grad_x=False.
    grad_weight_out / grad_bias_out: arrays to write those gradients into (as conv2d_backward)."""
    x = float_array(x, "x")
    weight = float_array(weight, "weight", x.dtype)
    check_ndim(weight, "weight", 2, "(out_features, in_features)")
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"x: expected last dimension {weight.shape[1]}, got shape {x.shape}")
    grad_out = float_array(grad_out, "grad_out", x.dtype)
    want = x.shape[:-1] + (weight.shape[0],)
    if grad_out.shape != want:
        raise ValueError(f"grad_out: expected shape {want}, got {grad_out.shape}")
    gw_out = out_array(grad_weight_out, "grad_weight_out", weight.shape, x.dtype, grad_out, x, weight)
    gb_out = out_array(grad_bias_out, "grad_bias_out", (weight.shape[0],), x.dtype, grad_out, x, weight, gw_out)
    gx, gw, gb = _core.linear_backward(grad_out.reshape(-1, weight.shape[0]), x.reshape(-1, x.shape[-1]), weight,
                                       bool(need_grad_x), gw_out, gb_out)
    return (gx.reshape(x.shape) if gx is not None else None), gw, gb


# ----------------------------------------------------------------- activations
def relu(x):
    """max(x, 0), elementwise; any shape."""
    return _core.relu_forward(float_array(x, "x"))


def _from_output(kernel, grad_out, y):
    """An activation's backward from its OUTPUT y: checks, then the C++ kernel."""
    y = float_array(y, "y")
    grad_out = float_array(grad_out, "grad_out", y.dtype)
    if grad_out.shape != y.shape:
        raise ValueError(f"grad_out: expected the shape of y {y.shape}, got {grad_out.shape}")
    return kernel(grad_out, y)


def relu_backward(grad_out, y):
    """Gradient of relu given its OUTPUT y: grad_out where y > 0, else 0."""
    return _from_output(_core.relu_backward, grad_out, y)


def _dropout_p(p):
    p = as_float(p, "p")
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p: expected a probability in [0, 1), got {p}")
    return p


def dropout(x, p, seed):
    """Inverted dropout (training mode): returns (y, mask), y = x * mask / (1 - p), mask a bool
    array of x's shape, each element dropped with probability p in [0, 1).

    The mask is a pure function of (seed, x.size): element i is kept when a 32-bit hash of
    (i, seed) is at least p * 2^32, so it is the same for any thread count. seed: an int in
    [0, 2^64) (draw a fresh one per call, e.g. from a numpy Generator)."""
    x = float_array(x, "x")
    p = _dropout_p(p)
    seed = as_int(seed, "seed")
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed: expected an int in [0, 2**64), got {seed}")
    return _core.dropout_forward(x, p, seed)


def dropout_backward(grad_out, mask, p):
    """Gradient of :func:`dropout`: grad_out * mask / (1 - p)."""
    grad_out = float_array(grad_out, "grad_out")
    p = _dropout_p(p)
    mask = np.asarray(mask)
    if mask.dtype != np.bool_ or mask.shape != grad_out.shape:
        raise ValueError(f"mask: expected the bool mask of shape {grad_out.shape} that dropout returned, "
                         f"got {mask.dtype} {mask.shape}")
    return _core.dropout_backward(grad_out, mask, 1.0 / (1.0 - p))


def sigmoid(x):
    """1 / (1 + exp(-x)) (seed 002 eq. 2), elementwise, any shape; never overflows, NaN propagates.
    float32 flushes results below 1.21e-38 (x < -87.3) to 0."""
    return _core.sigmoid_forward(float_array(x, "x"))


def sigmoid_backward(grad_out, y):
    """Gradient of sigmoid given its OUTPUT y: grad_out * y * (1 - y) (seed 002 eq. 19)."""
    return _from_output(_core.sigmoid_backward, grad_out, y)


# seed 003: relaxed receptive-field convolution (pyconvnet/relaxed.py)
from .relaxed import (grid_index, receptive_conv, receptive_conv_backward,  # noqa: E402
                      relaxed_conv, relaxed_conv_backward)

__all__ += ["relaxed_conv", "relaxed_conv_backward", "receptive_conv", "receptive_conv_backward", "grid_index"]
