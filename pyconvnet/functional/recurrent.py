"""Recurrent layers: the LSTM, batch first, in torch.nn.LSTM's weight layout.

For each step t (zero initial state h_0 = c_0 = 0), with x_t (N, I)::

    a_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh        (N, 4H), gate blocks [i, f, g, o]
    i, f, o = sigmoid(a_i), sigmoid(a_f), sigmoid(a_o);  g = tanh(a_g)
    c_t = f * c_{t-1} + i * g;   h_t = o * tanh(c_t)

weight_ih (4H, I), weight_hh (4H, H), bias_ih / bias_hh (4H,): torch's ``weight_ih_l0`` etc.,
so weights move between the two by name. Forward and backward through time run in C++.
"""
from __future__ import annotations

import numpy as np

from .. import _core
from .._args import check_ndim, float_array, out_array

__all__ = ["lstm", "lstm_backward"]


def _check(x, weight_ih, weight_hh, bias_ih, bias_hh):
    x = float_array(x, "x")
    check_ndim(x, "x", 3, "(N, T, input_size)")
    weight_ih = float_array(weight_ih, "weight_ih", x.dtype)
    weight_hh = float_array(weight_hh, "weight_hh", x.dtype)
    check_ndim(weight_ih, "weight_ih", 2, "(4*hidden_size, input_size)")
    check_ndim(weight_hh, "weight_hh", 2, "(4*hidden_size, hidden_size)")
    g = weight_ih.shape[0]
    if g < 4 or g % 4:
        raise ValueError(f"weight_ih: expected shape (4*hidden_size, input_size), got {weight_ih.shape} "
                         f"({g} rows is not a positive multiple of 4)")
    hidden = g // 4
    if weight_ih.shape[1] != x.shape[2]:
        raise ValueError(f"weight_ih: expected shape ({g}, {x.shape[2]}) (input_size = x.shape[2] of x "
                         f"{x.shape}), got {weight_ih.shape}")
    if weight_hh.shape != (g, hidden):
        raise ValueError(f"weight_hh: expected shape ({g}, {hidden}) (hidden_size {hidden} from weight_ih), "
                         f"got {weight_hh.shape}")
    if min(x.shape) < 1:
        raise ValueError(f"x: expected a non-empty (N, T, input_size) array, got shape {x.shape}")
    biases = []
    for b, name in ((bias_ih, "bias_ih"), (bias_hh, "bias_hh")):
        if b is not None:
            b = float_array(b, name, x.dtype)
            if b.shape != (g,):
                raise ValueError(f"{name}: expected shape ({g},), got {b.shape}")
        biases.append(b)
    return x, weight_ih, weight_hh, biases[0], biases[1], hidden


def lstm(x, weight_ih, weight_hh, bias_ih=None, bias_hh=None, *, return_sequences=True, return_saved=False):
    """LSTM over x (N, T, input_size) from the zero state.

    Returns every step's hidden state (N, T, H) (``return_sequences=True``) or the last one
    (N, H). With ``return_saved=True`` returns ``(output, saved)``; ``saved`` is what
    :func:`lstm_backward` reuses instead of running the forward again."""
    x, weight_ih, weight_hh, bias_ih, bias_hh, _ = _check(x, weight_ih, weight_hh, bias_ih, bias_hh)
    h, gates, c = _core.lstm_forward(x, weight_ih, weight_hh, bias_ih, bias_hh)
    y = h if return_sequences else h[:, -1]
    return (y, (h, gates, c)) if return_saved else y


def lstm_backward(grad_out, x, weight_ih, weight_hh, bias_ih=None, bias_hh=None, *, saved=None, need_grad_x=True,
                  grad_weight_ih_out=None, grad_weight_hh_out=None):
    """Gradients of :func:`lstm`: (grad_x, grad_weight_ih, grad_weight_hh, grad_bias_ih, grad_bias_hh).

    grad_out: (N, T, H) for ``return_sequences=True``, or (N, H), the gradient of the last
    hidden state only. saved: from ``lstm(..., return_saved=True)`` with the same arguments
    (None: the forward is run again). grad_x is None when need_grad_x=False; a bias gradient
    is None when that bias is. grad_weight_*_out: arrays to write those gradients into."""
    x, weight_ih, weight_hh, bias_ih, bias_hh, hidden = _check(x, weight_ih, weight_hh, bias_ih, bias_hh)
    n, t, _ = x.shape
    grad_out = float_array(grad_out, "grad_out", x.dtype)
    if grad_out.shape == (n, hidden):
        g = grad_out
        grad_out = np.zeros((n, t, hidden), x.dtype)
        grad_out[:, -1] = g
    elif grad_out.shape != (n, t, hidden):
        raise ValueError(f"grad_out: expected shape {(n, t, hidden)} (every step) or {(n, hidden)} (the last "
                         f"step), got {grad_out.shape}")
    if saved is None:
        saved = _core.lstm_forward(x, weight_ih, weight_hh, bias_ih, bias_hh)
    elif not (isinstance(saved, tuple) and len(saved) == 3):
        raise TypeError(f"saved: expected the (h, gates, c) tuple lstm(..., return_saved=True) returns, "
                        f"got {type(saved).__name__}")
    h, gates, c = saved
    gwi = out_array(grad_weight_ih_out, "grad_weight_ih_out", weight_ih.shape, x.dtype, grad_out, x, weight_ih)
    gwh = out_array(grad_weight_hh_out, "grad_weight_hh_out", weight_hh.shape, x.dtype, grad_out, x, weight_hh,
                    gwi)
    gx, gwi, gwh, gb = _core.lstm_backward(grad_out, x, weight_ih, weight_hh, h, gates, c, bool(need_grad_x),
                                           gwi, gwh)
    gb_ih = gb if bias_ih is not None else None
    gb_hh = (gb.copy() if bias_ih is not None else gb) if bias_hh is not None else None
    return gx, gwi, gwh, gb_ih, gb_hh
