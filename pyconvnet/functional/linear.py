"""Fully connected layer: y = x @ weight.T + bias."""
from __future__ import annotations

from .. import _core
from .._args import check_ndim, float_array, out_array

__all__ = ["linear", "linear_backward"]


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
