"""Naive references of the relaxed receptive-field convolution (the relaxed receptive
field paper's O = I (x) L (x) W): plain loops over output positions (over input
positions for the scatter-shaped grad_x) with a small NumPy reduction, in float64,
cast back to the input dtype. Written from the formulas only: independent of the C++
kernels and of pyconvnet.functional."""
from __future__ import annotations

import numpy as np

from ._common import result_dtype

__all__ = ["relaxed_conv", "relaxed_conv_backward", "receptive_conv", "receptive_conv_backward"]


def relaxed_conv(x, L, w, bias=None):
    """Naive y[n,o,j] = sum_{c,s,i} w[o,c,s] x[n,c,i] L[i,j,s] + bias[o]."""
    dt = result_dtype(x, L, w)
    x, L, w = (np.asarray(a, np.float64) for a in (x, L, w))
    N, C, n_in = x.shape
    _, n_out, k = L.shape
    O = w.shape[0]
    y = np.zeros((N, O, n_out))
    for n in range(N):
        for o in range(O):
            for j in range(n_out):
                # (C, k, 1) * (C, 1, n_in) * (1, k, n_in)
                y[n, o, j] = np.sum(w[o][:, :, None] * x[n][:, None, :] * L[:, j, :].T[None])
                if bias is not None:
                    y[n, o, j] += float(np.asarray(bias, np.float64)[o])
    return y.astype(dt)


def relaxed_conv_backward(grad_out, x, L, w):
    """Naive (grad_x, grad_L, grad_w, grad_bias) of relaxed_conv, each from its own sum."""
    dt = result_dtype(x, L, w)
    g, x, L, w = (np.asarray(a, np.float64) for a in (grad_out, x, L, w))
    N, C, n_in = x.shape
    _, n_out, k = L.shape
    O = w.shape[0]
    gx = np.zeros(x.shape)
    for n in range(N):
        for c in range(C):
            for i in range(n_in):  # sum_{o,j,s} g[n,o,j] w[o,c,s] L[i,j,s]
                gx[n, c, i] = np.sum(g[n][:, :, None] * w[:, c, :][:, None, :] * L[i][None])
    gL = np.zeros(L.shape)
    for i in range(n_in):
        for j in range(n_out):
            for s in range(k):  # sum_{n,o,c} g[n,o,j] w[o,c,s] x[n,c,i]
                gL[i, j, s] = np.sum(g[:, :, j][:, :, None] * w[:, :, s][None] * x[:, :, i][:, None, :])
    gw = np.zeros(w.shape)
    for o in range(O):
        for c in range(C):
            for s in range(k):  # sum_{n,j,i} g[n,o,j] x[n,c,i] L[i,j,s]
                gw[o, c, s] = np.sum(g[:, o, :][:, :, None] * x[:, c, :][:, None, :] * L[:, :, s].T[None])
    gb = np.array([np.sum(g[:, o, :]) for o in range(O)])
    return gx.astype(dt), gL.astype(dt), gw.astype(dt), gb.astype(dt)


def receptive_conv(x, index, w, bias=None):
    """Naive y[n,o,j] = sum_{c,s} w[o,c,s] x[n,c,index[j,s]] (0 where index is -1) + bias[o]."""
    dt = result_dtype(x, w)
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    index = np.asarray(index)
    N, C, _ = x.shape
    n_out, k = index.shape
    O = w.shape[0]
    y = np.zeros((N, O, n_out))
    for n in range(N):
        for o in range(O):
            for j in range(n_out):
                total = 0.0
                for s in range(k):
                    i = int(index[j, s])
                    if i >= 0:
                        total += float(np.sum(w[o, :, s] * x[n, :, i]))
                if bias is not None:
                    total += float(np.asarray(bias, np.float64)[o])
                y[n, o, j] = total
    return y.astype(dt)


def receptive_conv_backward(grad_out, x, index, w):
    """Naive (grad_x, grad_w, grad_bias) of receptive_conv; grad_x loops over input positions."""
    dt = result_dtype(x, w)
    g, x, w = (np.asarray(a, np.float64) for a in (grad_out, x, w))
    index = np.asarray(index)
    N, C, n_in = x.shape
    n_out, k = index.shape
    O = w.shape[0]
    gx = np.zeros(x.shape)
    for i in range(n_in):
        js, ss = np.nonzero(index == i)  # every (output, slot) that reads input i
        for n in range(N):
            for c in range(C):
                gx[n, c, i] = np.sum(g[n][:, js] * w[:, c, ss])
    gw = np.zeros(w.shape)
    for o in range(O):
        for c in range(C):
            for s in range(k):
                total = 0.0
                for j in range(n_out):
                    i = int(index[j, s])
                    if i >= 0:
                        total += float(np.sum(g[:, o, j] * x[:, c, i]))
                gw[o, c, s] = total
    gb = np.array([np.sum(g[:, o, :]) for o in range(O)])
    return gx.astype(dt), gw.astype(dt), gb.astype(dt)
