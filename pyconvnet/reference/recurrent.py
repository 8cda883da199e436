"""Naive LSTM (batch first, torch.nn.LSTM's gate order i, f, g, o), sample by sample and
step by step, float64; the backward is backpropagation through time written out per unit."""
from __future__ import annotations

import math

import numpy as np

from ._common import _F64, _float_dtype

__all__ = ["lstm", "lstm_backward"]


def _sig(v):
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


def _forward(x, w_ih, w_hh, b_ih, b_hh):
    """Per sample n and step t: the activated gates (i, f, g, o) and c_t, h_t, as float64 arrays."""
    n_, t_, _ = x.shape
    hidden = w_ih.shape[0] // 4
    b = (np.zeros(4 * hidden) if b_ih is None else b_ih) + (np.zeros(4 * hidden) if b_hh is None else b_hh)
    gates = np.zeros((n_, t_, 4, hidden))
    c = np.zeros((n_, t_, hidden))
    h = np.zeros((n_, t_, hidden))
    for n in range(n_):
        h_prev, c_prev = np.zeros(hidden), np.zeros(hidden)
        for t in range(t_):
            for k in range(hidden):
                a = [float(np.dot(w_ih[q * hidden + k], x[n, t]) + np.dot(w_hh[q * hidden + k], h_prev)
                           + b[q * hidden + k]) for q in range(4)]
                i, f, g, o = _sig(a[0]), _sig(a[1]), math.tanh(a[2]), _sig(a[3])
                gates[n, t, :, k] = (i, f, g, o)
                c[n, t, k] = f * c_prev[k] + i * g
                h[n, t, k] = o * math.tanh(c[n, t, k])
            h_prev, c_prev = h[n, t], c[n, t]
    return gates, c, h


def _args(x, weight_ih, weight_hh, bias_ih, bias_hh):
    x = np.asarray(x)
    dtype = _float_dtype(x)
    w_ih, w_hh = np.asarray(weight_ih, _F64), np.asarray(weight_hh, _F64)
    if x.ndim != 3 or w_ih.ndim != 2 or w_ih.shape[1] != x.shape[2] or w_ih.shape[0] % 4 \
            or w_hh.shape != (w_ih.shape[0], w_ih.shape[0] // 4):
        raise ValueError(f"x {x.shape}, weight_ih {w_ih.shape}, weight_hh {w_hh.shape}: expected (N, T, I), "
                         f"(4H, I), (4H, H)")
    b_ih = None if bias_ih is None else np.asarray(bias_ih, _F64)
    b_hh = None if bias_hh is None else np.asarray(bias_hh, _F64)
    return x.astype(_F64), dtype, w_ih, w_hh, b_ih, b_hh


def lstm(x, weight_ih, weight_hh, bias_ih=None, bias_hh=None, *, return_sequences=True):
    """h_t for every step (N, T, H), or the last step's (N, H) with return_sequences=False."""
    x, dtype, w_ih, w_hh, b_ih, b_hh = _args(x, weight_ih, weight_hh, bias_ih, bias_hh)
    _, _, h = _forward(x, w_ih, w_hh, b_ih, b_hh)
    return (h if return_sequences else h[:, -1]).astype(dtype)


def lstm_backward(grad_out, x, weight_ih, weight_hh, bias_ih=None, bias_hh=None, *, need_grad_x=True):
    """(grad_x, grad_weight_ih, grad_weight_hh, grad_bias_ih, grad_bias_hh); grad_out (N, T, H) or
    (N, H) for the last step only. From the chain rule per unit, back from the last step:
    dh_t = grad_out_t + sum_q da_{t+1,q} W_hh[q]; dc_t = dh_t o (1 - tanh^2 c_t) + dc_{t+1} f_{t+1};
    da_i = dc i(1-i) g, da_f = dc f(1-f) c_{t-1}, da_g = dc i (1-g^2), da_o = dh tanh(c_t) o(1-o)."""
    x, dtype, w_ih, w_hh, b_ih, b_hh = _args(x, weight_ih, weight_hh, bias_ih, bias_hh)
    n_, t_, _ = x.shape
    hidden = w_ih.shape[0] // 4
    gy = np.asarray(grad_out, _F64)
    if gy.shape == (n_, hidden):
        full = np.zeros((n_, t_, hidden))
        full[:, -1] = gy
        gy = full
    if gy.shape != (n_, t_, hidden):
        raise ValueError(f"grad_out {gy.shape}: expected {(n_, t_, hidden)} or {(n_, hidden)}")
    gates, c, h = _forward(x, w_ih, w_hh, b_ih, b_hh)
    gx = np.zeros_like(x)
    gwi, gwh, gb = np.zeros_like(w_ih), np.zeros_like(w_hh), np.zeros(4 * hidden)
    for n in range(n_):
        dh_next, dc_next = np.zeros(hidden), np.zeros(hidden)
        for t in reversed(range(t_)):
            da = np.zeros(4 * hidden)
            dc_t = np.zeros(hidden)
            for k in range(hidden):
                i, f, g, o = gates[n, t, :, k]
                tc = math.tanh(c[n, t, k])
                dh = gy[n, t, k] + dh_next[k]
                dc = dh * o * (1 - tc * tc) + dc_next[k]
                c_prev = c[n, t - 1, k] if t > 0 else 0.0
                da[k] = dc * g * i * (1 - i)
                da[hidden + k] = dc * c_prev * f * (1 - f)
                da[2 * hidden + k] = dc * i * (1 - g * g)
                da[3 * hidden + k] = dh * tc * o * (1 - o)
                dc_t[k] = dc * f
            h_prev = h[n, t - 1] if t > 0 else np.zeros(hidden)
            for r in range(4 * hidden):
                gx[n, t] += da[r] * w_ih[r]
                gwi[r] += da[r] * x[n, t]
                gwh[r] += da[r] * h_prev
                gb[r] += da[r]
            dh_next = np.array([float(np.dot(da, w_hh[:, k])) for k in range(hidden)])
            dc_next = dc_t
    return (gx.astype(dtype) if need_grad_x else None, gwi.astype(dtype), gwh.astype(dtype),
            None if b_ih is None else gb.astype(dtype), None if b_hh is None else gb.astype(dtype))
