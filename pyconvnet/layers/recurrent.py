"""Recurrent layers: LSTM (batch first, torch.nn.LSTM's parameter names and layout)."""
from __future__ import annotations

import numpy as np

from .. import functional as F
from .. import init as _init
from .._args import flag, float_dtype, positive_int
from .base import Layer

__all__ = ["LSTM"]


class LSTM(Layer):
    """One LSTM layer over x (N, T, input_size), batch first, from the zero state.

    Output: every step's hidden state (N, T, hidden_size) with ``return_sequences=True``,
    else the last step's (N, hidden_size) (Keras's ``return_sequences``). Parameters
    ``weight_ih`` (4H, I), ``weight_hh`` (4H, H), ``bias_ih`` / ``bias_hh`` (4H,), gate blocks
    in the order input, forget, cell, output: torch.nn.LSTM's ``weight_ih_l0`` etc., so a
    state dict moves between the two by dropping the ``_l0`` suffix. Initialised as torch
    does: every parameter U(-1/sqrt(H), 1/sqrt(H)) (rng: Generator or int seed; or seed)."""

    def __init__(self, input_size, hidden_size, return_sequences=False, bias=True, *, rng=None, seed=None,
                 dtype=np.float32):
        super().__init__()
        self.input_size = positive_int(input_size, "input_size")
        self.hidden_size = positive_int(hidden_size, "hidden_size")
        self.return_sequences = flag(return_sequences, "return_sequences")
        self.bias = flag(bias, "bias")
        self.dtype = float_dtype(dtype)
        gen = _init.as_rng(rng, seed)
        if seed is None and rng is not None and not isinstance(rng, np.random.Generator):
            seed = rng
        self._seed = None if seed is None else int(seed)
        h, i = self.hidden_size, self.input_size
        k = 1.0 / np.sqrt(h)
        shapes = [("weight_ih", (4 * h, i)), ("weight_hh", (4 * h, h))]
        if self.bias:
            shapes += [("bias_ih", (4 * h,)), ("bias_hh", (4 * h,))]
        for name, shape in shapes:  # drawn in float64: the same seed gives the same model in either dtype
            self._add_param(name, np.ascontiguousarray(gen.uniform(-k, k, shape), dtype=self.dtype))

    def _args(self):
        return dict(input_size=self.input_size, hidden_size=self.hidden_size,
                    return_sequences=self.return_sequences, bias=self.bias, seed=self._seed, dtype=self.dtype.name)

    def _weights(self):
        p = self._params
        return p["weight_ih"], p["weight_hh"], p.get("bias_ih"), p.get("bias_hh")

    def forward(self, x, training=False):
        x = self._input(x)
        y, saved = F.lstm(x, *self._weights(), return_sequences=self.return_sequences, return_saved=True)
        self._cache = (x, saved)
        return y

    def backward(self, grad_y):
        x, saved = self._saved()
        n, t, _ = x.shape
        want = (n, t, self.hidden_size) if self.return_sequences else (n, self.hidden_size)
        if np.shape(grad_y) != want:
            raise ValueError(f"grad_y: expected shape {want} (that of the forward output), got {np.shape(grad_y)}")
        gx, _, _, gbi, gbh = F.lstm_backward(grad_y, x, *self._weights(), saved=saved,
                                             need_grad_x=self.need_input_grad,
                                             grad_weight_ih_out=self._grads["weight_ih"],
                                             grad_weight_hh_out=self._grads["weight_hh"])
        if self.bias:
            self._set_grad("bias_ih", gbi)
            self._set_grad("bias_hh", gbh)
        return gx
