"""RelaxedConv: the relaxed receptive-field convolution as a layer (Tazume et al.,
"Proposal of optimization method of local receptive field using gradient descent").
The layer calls the functions of :mod:`pyconvnet.functional.relaxed`; the bilevel search that learns
its receptive field is :mod:`pyconvnet.search`."""
from __future__ import annotations

import math

import numpy as np

from .. import functional as F
from .._args import as_int, positive_int
from .base import ParamLayer

__all__ = ["RelaxedConv"]


def _neighbour_offsets(count):
    """``count`` (dr, dc) offsets around a centre, nearest rings first, row-major in a ring,
    the centre itself excluded: the first 8 are a 3x3 neighbourhood."""
    out, radius = [], 1
    while len(out) < count:
        ring = [(dr, dc) for dr in range(-radius, radius + 1) for dc in range(-radius, radius + 1)
                if max(abs(dr), abs(dc)) == radius]
        out.extend(ring)
        radius += 1
    return out[:count]


class RelaxedConv(ParamLayer):
    """Relaxed receptive-field convolution layer (the relaxed receptive field paper, Fig. 3.1).

    x (N, C_in, n_in) -- or (N, C_in, H, W) with H*W = n_in, flattened -- ->
    y (N, C_out, n_out). Parameters: ``R`` (n_in, n_out, k), the receptive-field
    source tensor; ``weight`` (C_out, C_in, k); ``bias`` (C_out,).

    Relaxed mode (default): ``L_c = softmax(R, axis=0)`` and y = relaxed_conv(x, L_c, W).
    With ``centre=True`` slot 0 is fixed to the identity (output j reads input j, so
    n_in must equal n_out) or to ``centre_map`` (n_out,) and gets no gradient (the paper's §4.1).
    ``discretize()`` switches to ``L_d`` = one-hot argmax of R over the input axis (eq. 3),
    kept as the int64 buffer ``index`` (n_out, k), and the layer runs through
    receptive_conv; R then gets zero gradient. ``discrete=True`` builds the layer
    discretised (with ``load_state_dict`` this restores a saved discrete layer).

    ``R`` init: N(0, r_std^2) (near-uniform L_c, as DARTS's alphas). ``init_grid=(H, W)``
    (needs n_in = n_out = H*W) adds ``grid_logit`` (default: the logit giving 0.9 of
    the softmax mass) at the image-grid neighbours of each output pixel: slots in the
    3x3 neighbourhood order (then 5x5 ring...), border neighbours clamped into the image.
    Attributes the bilevel search sets (not part of the config): ``arch_grad`` -- True:
    grad R; False: skip it (one GEMM less), grad R = 0; ``"L"``: leave the raw gradient
    with respect to L_c in grads['R'] (the softmax Jacobian not applied, see
    :func:`pyconvnet.functional.soft_receptive_field_backward`); ``weight_grad=False`` skips grad weight/bias
    (left 0). ``hold_L()`` (a context manager) reuses one L_c for every forward inside it
    (R must not change there). A training forward keeps the patches P (C_in, N, n_out, k)
    for the backward's grad_weight when they take at most ``patch_cache_bytes`` (class
    attribute, 256 MiB); otherwise the backward recomputes them (one GEMM as large as the
    forward's)."""

    patch_cache_bytes = 256 * 2**20

    def __init__(self, in_channels, out_channels, n_in, n_out, k, centre=True, centre_map=None, init_grid=None,
                 bias=True, discrete=False, r_std=1e-3, grid_logit=None, *, init="kaiming_normal",
                 bias_init=None, rng=None, seed=None, dtype=np.float32):
        super().__init__(dtype, init, bias_init, rng, seed)
        self.in_channels = positive_int(in_channels, "in_channels")
        self.out_channels = positive_int(out_channels, "out_channels")
        self.n_in = positive_int(n_in, "n_in")
        self.n_out = positive_int(n_out, "n_out")
        self.k = positive_int(k, "k")
        if not isinstance(centre, (bool, np.bool_)):
            raise TypeError(f"centre: expected a bool, got {centre!r}")
        if not isinstance(bias, (bool, np.bool_)) or not isinstance(discrete, (bool, np.bool_)):
            raise TypeError(f"bias/discrete: expected bools, got bias={bias!r}, discrete={discrete!r}")
        self.centre, self.bias = bool(centre), bool(bias)
        self.r_std = float(r_std)
        if not (self.r_std >= 0 and math.isfinite(self.r_std)):
            raise ValueError(f"r_std: expected a finite value >= 0, got {r_std}")
        self.centre_map = None
        if centre_map is not None:
            if not self.centre:
                raise ValueError("centre_map: only meaningful with centre=True")
            cm = np.asarray(centre_map)
            if cm.dtype.kind not in "iu" or cm.shape != (self.n_out,):
                raise ValueError(f"centre_map: expected ({self.n_out},) integers, got {cm.dtype} {cm.shape}")
            if cm.size and (cm.min() < 0 or cm.max() >= self.n_in):
                raise ValueError(f"centre_map: values must lie in [0, {self.n_in})")
            self.centre_map = cm.astype(np.int64)
        elif self.centre:
            if self.n_in != self.n_out:
                raise ValueError(f"centre: the identity centre needs n_in == n_out (got {self.n_in}, {self.n_out}); "
                                 f"give centre_map or centre=False")
        self.init_grid = None
        if init_grid is not None:
            gh, gw = (as_int(v, "init_grid") for v in init_grid)
            if gh * gw != self.n_in or self.n_in != self.n_out:
                raise ValueError(f"init_grid: needs n_in == n_out == H*W, got init_grid={init_grid!r}, "
                                 f"n_in={self.n_in}, n_out={self.n_out}")
            self.init_grid = (gh, gw)
        self.grid_logit = None if grid_logit is None else float(grid_logit)
        R = self._init_R()
        self._make((self.out_channels, self.in_channels, self.k), self.out_channels if self.bias else 0,
                   self.in_channels * self.k, self.out_channels * self.k)
        # params in the documented order: R, weight, bias
        params = {"R": R, **self._params}
        self._params.clear()
        for name, value in params.items():
            self._add_param(name, value)
        self._buffers["index"] = self._argmax_index()
        self.discrete = bool(discrete)
        self.arch_grad = True
        self.weight_grad = True
        self._hold, self._held_L = False, None

    # ------------------------------------------------------------ construction helpers
    def _centres(self):
        return self.centre_map if self.centre_map is not None else np.arange(self.n_out)

    def _init_R(self):
        R = self._rng.standard_normal((self.n_in, self.n_out, self.k)) * self.r_std
        if self.init_grid is not None:
            h, w = self.init_grid
            logit = self.grid_logit
            if logit is None:  # softmax mass 0.9 on one of n_in entries
                logit = math.log(0.9 * max(self.n_in - 1, 1) / 0.1)
            first = 1 if self.centre else 0
            offsets = ([] if self.centre else [(0, 0)]) + _neighbour_offsets(self.k)
            rows, cols = np.divmod(np.arange(self.n_out), w)
            for s in range(first, self.k):
                dr, dc = offsets[s - first] if self.centre else offsets[s]
                src = np.clip(rows + dr, 0, h - 1) * w + np.clip(cols + dc, 0, w - 1)
                R[src, np.arange(self.n_out), s] += logit
        return np.ascontiguousarray(R, dtype=self.dtype)

    def _args(self):
        return dict(in_channels=self.in_channels, out_channels=self.out_channels, n_in=self.n_in, n_out=self.n_out,
                    k=self.k, centre=self.centre,
                    centre_map=None if self.centre_map is None else self.centre_map.tolist(),
                    init_grid=self.init_grid, bias=self.bias, discrete=self.discrete, r_std=self.r_std,
                    grid_logit=self.grid_logit, **self._init_args())

    def __repr__(self):
        return (f"RelaxedConv({self.in_channels}, {self.out_channels}, n_in={self.n_in}, n_out={self.n_out}, "
                f"k={self.k}, centre={self.centre}, discrete={self.discrete})")

    # ------------------------------------------------------------ receptive fields
    def soft_L(self):
        """The continuous receptive field L_c = softmax(R, axis=0) (centre slot fixed)."""
        if self._hold and self._held_L is not None:
            return self._held_L
        L = F.soft_receptive_field(self._params["R"], self._centres() if self.centre else None)
        if self._hold:
            self._held_L = L
        return L

    def hold_L(self):
        """Context manager: inside it, forward computes softmax(R) once and reuses it."""
        layer = self

        class _Hold:
            def __enter__(self):
                layer._hold, layer._held_L = True, None
                return layer

            def __exit__(self, *exc):
                layer._hold, layer._held_L = False, None
                return False

        return _Hold()

    def _argmax_index(self):
        idx = np.argmax(self._params["R"], axis=0).astype(np.int64)
        if self.centre:
            idx[:, 0] = self._centres()
        return np.ascontiguousarray(idx)

    @property
    def buffers(self):
        """``index``: the discrete table; in relaxed mode refreshed to argmax(R) on every access, so a
        state_dict saved from a relaxed layer loads into a discrete one as its discretisation."""
        if not self.discrete:
            np.copyto(self._buffers["index"], self._argmax_index())
        return super().buffers

    def receptive_index(self):
        """The discrete table (n_out, k): the buffer in discrete mode, else argmax of the current R."""
        return self._buffers["index"].copy() if self.discrete else self._argmax_index()

    def discretize(self):
        """L_d = one-hot argmax of R (eq. 3): stores the table in buffers['index'] and runs discretely."""
        np.copyto(self._buffers["index"], self._argmax_index())
        self.discrete = True
        self._cache = None
        return self

    def relax(self):
        """Back to the continuous L_c = softmax(R)."""
        self.discrete = False
        self._cache = None
        return self

    # ------------------------------------------------------------ forward / backward
    def _flat_input(self, x):
        x = self._input(x)
        if x.ndim == 4:
            x3 = x.reshape(x.shape[0], x.shape[1], x.shape[2] * x.shape[3])
        elif x.ndim == 3:
            x3 = x
        else:
            raise ValueError(f"x: expected (N, C_in, n_in) or (N, C_in, H, W), got shape {x.shape}")
        if x3.shape[1:] != (self.in_channels, self.n_in):
            raise ValueError(f"x: expected (N, {self.in_channels}, {self.n_in}) (or H*W = {self.n_in}), "
                             f"got shape {x.shape}")
        return x, x3

    def forward(self, x, training=False):
        x, x3 = self._flat_input(x)
        w, b = self._params["weight"], self._params.get("bias")
        if self.discrete:
            idx = self._buffers["index"]
            self._cache = (x.shape, x3, idx, None, None)
            return F.receptive_conv(x3, idx, w, b)
        L = self.soft_L()
        P = None
        if training and self.weight_grad and x3.shape[0] * x3.shape[1] * L[0].size * x3.itemsize \
                <= self.patch_cache_bytes:
            y, P = F.relaxed_conv(x3, L, w, b, return_patches=True)
        else:
            y = F.relaxed_conv(x3, L, w, b)
        self._cache = (x.shape, x3, None, L, P)
        return y

    def backward(self, grad_y):
        shape, x3, idx, L, P = self._saved()
        w = self._params["weight"]
        if idx is not None:
            gx, gw, gb = F.receptive_conv_backward(grad_y, x3, idx, w, need_grad_x=self.need_input_grad)
            self._grads["R"].fill(0)
        else:
            mode = self.arch_grad
            if mode not in (True, False, "L"):
                raise ValueError(f"arch_grad: expected True, False or 'L', got {mode!r}")
            gx, gL, gw, gb = F.relaxed_conv_backward(
                grad_y, x3, L, w, patches=P, need_grad_x=bool(self.need_input_grad), need_grad_L=mode is not False,
                need_grad_weight=bool(self.weight_grad))
            if gL is None:
                self._grads["R"].fill(0)
            elif mode == "L":
                if self.centre:
                    gL[:, :, 0] = 0
                self._set_grad("R", gL)
            else:
                self._set_grad("R", F.soft_receptive_field_backward(gL, L, self.centre))
        for name, g in (("weight", gw), ("bias", gb if self.bias else None)):
            if name in self._grads:
                if g is None:
                    self._grads[name].fill(0)
                else:
                    self._set_grad(name, g)
        return None if gx is None else gx.reshape(shape)
