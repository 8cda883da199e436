"""The kernel rows: shapes, input data, FLOP/byte counts, and how each contender runs them.

A row is one (op, shape, mode) with mode ``fwd`` or ``fwdbwd``. Every contender's
builder returns a zero-argument callable whose return value is a tuple of
arrays, in the same order for every contender (e.g. conv fwdbwd: y, grad_x,
grad_weight, grad_bias), so one comparison validates any contender against
pyconvnet.functional.

The relaxed receptive-field rows (the relaxed receptive field paper, ``pyconvnet.functional.relaxed``) have 1-D data:
``x`` is (N, C_in, n_in) and ``params`` holds ``out`` (C_out), ``n_out``, ``k`` and
``field``: ``relaxed_conv`` contracts with a dense L (n_in, n_out, k) (``field``
'softmax': softmax over the input axis of N(0, 1) logits, as the layer's L_c), and
``receptive_conv`` gathers through an int64 index table (n_out, k) (``field`` 'grid':
``grid_index`` of a 3x3 'same' convolution with -1 zero padding at the border;
'random': slot 0 the centre j and k-1 uniformly random inputs, as the experiment's
random-field ablation and the discretised fields on shuffled pixels).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from pyconvnet import functional

from . import npimpl


RELAXED_OPS = ("relaxed_conv", "receptive_conv")


@dataclass(frozen=True)
class Case:
    op: str      # conv2d | max_pool2d | avg_pool2d | batch_norm | unfold | relaxed_conv | receptive_conv
    label: str   # e.g. lenet.conv1
    mode: str    # fwd | fwdbwd
    x: tuple     # input shape (N, C, H, W); (N, C_in, n_in) for the relaxed ops
    params: dict = field(default_factory=dict, hash=False, compare=False)
    quick: bool = True  # part of the --quick subset

    @property
    def id(self) -> str:
        return f"{self.op} {self.label} {self.mode}"

    @property
    def batch(self) -> int:
        return self.x[0]

    # ---------------------------------------------------------------- napkin math
    def out_hw(self):
        if self.op in RELAXED_OPS:
            return (self.params["n_out"],)
        n, c, h, w = self.x
        if self.op in ("conv2d", "unfold"):
            k, p, s = self.params["k"], self.params.get("padding", 0), self.params.get("stride", 1)
            return (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
        if self.op in ("max_pool2d", "avg_pool2d"):
            k = self.params["k"]
            return h // k, w // k
        return h, w

    @property
    def flops(self):
        """Conv FLOPs: forward 2*N*O*OH*OW*C*kh*kw; forward+backward 3x that.
        relaxed_conv (dense L): forward 2*N*C_in*n_in*n_out*k (P = x L) + 2*N*C_out*C_in*k*n_out
        (y = W P); the backward is the same two contractions twice (grad_x and grad_L from
        grad_P, grad_W and grad_P from grad_y), so forward+backward is 3x. None for other ops
        (receptive_conv is a gather plus a small GEMM: rated in GB/s, see min_bytes)."""
        if self.op == "relaxed_conv":
            n, c, n_in = self.x
            o, n_out, k = self.params["out"], self.params["n_out"], self.params["k"]
            f = 2.0 * n * c * n_in * n_out * k + 2.0 * n * o * c * k * n_out
            return 3.0 * f if self.mode == "fwdbwd" else f
        if self.op != "conv2d":
            return None
        n, c, _, _ = self.x
        oh, ow = self.out_hw()
        k = self.params["k"]
        f = 2.0 * n * self.params["out"] * oh * ow * c * k * k
        return 3.0 * f if self.mode == "fwdbwd" else f

    @property
    def min_bytes(self):
        """Compulsory float32 traffic (inputs read + outputs written once): a GB/s yardstick
        for the memory-bound rows. Index arrays and workspaces are not counted.
        receptive_conv: x read, y written (fwd); + grad_y read, grad_x written (fwdbwd);
        the weights (C_out*C_in*k) are negligible and not counted."""
        if self.op == "receptive_conv":
            n, c, n_in = self.x
            xs, ys = n * c * n_in, n * self.params["out"] * self.params["n_out"]
            return 4.0 * (xs + ys) * (2 if self.mode == "fwdbwd" else 1)
        if self.op == "relaxed_conv":
            return None
        n, c, h, w = self.x
        oh, ow = self.out_hw()
        xs = n * c * h * w
        if self.op in ("max_pool2d", "avg_pool2d"):
            ys = n * c * oh * ow
            fwd = xs + ys
            return 4.0 * (fwd + (ys + xs if self.mode == "fwdbwd" else 0))
        if self.op == "batch_norm":
            return 4.0 * (2 * xs + (3 * xs if self.mode == "fwdbwd" else 0))  # fwd x->y; bwd reads x, gy, writes gx
        if self.op == "unfold":
            k = self.params["k"]
            cols = n * c * k * k * oh * ow
            return 4.0 * (xs + cols + (cols + xs if self.mode == "fwdbwd" else 0))
        return None


def _conv(label, x, out, k, padding=0, quick=True):
    return [Case("conv2d", label, m, x, {"out": out, "k": k, "padding": padding}, quick) for m in ("fwd", "fwdbwd")]


def _relaxed(op, label, side, field="softmax", batch=128, c_in=1, c_out=8, k=9, quick=()):
    n = side * side
    params = {"out": c_out, "n_out": n, "k": k, "field": field, "image": [side, side]}
    return [Case(op, label, m, (batch, c_in, n), params, m in quick) for m in ("fwd", "fwdbwd")]


def all_cases() -> list[Case]:
    cases = []
    cases += _conv("lenet.conv1", (64, 1, 32, 32), 6, 5)
    cases += _conv("lenet.conv3", (64, 6, 14, 14), 16, 5)
    cases += _conv("lenet.conv5", (64, 16, 5, 5), 120, 5)
    cases += _conv("keras.conv1", (32, 1, 28, 28), 32, 3, padding=1)
    cases += _conv("keras.conv2", (32, 32, 28, 28), 64, 3, padding=1)
    cases += _conv("cifar.conv1", (128, 3, 32, 32), 32, 3, padding=1, quick=False)
    cases += _conv("cifar.conv2", (128, 32, 32, 32), 64, 3, padding=1, quick=False)
    cases += _conv("cifar.conv3", (128, 64, 16, 16), 128, 3, padding=1, quick=False)
    for m in ("fwd", "fwdbwd"):
        cases.append(Case("max_pool2d", "keras.pool", m, (32, 64, 28, 28), {"k": 2}))
    for m in ("fwd", "fwdbwd"):
        cases.append(Case("max_pool2d", "cifar.pool", m, (128, 64, 32, 32), {"k": 2}, quick=False))
    for m in ("fwd", "fwdbwd"):
        cases.append(Case("avg_pool2d", "cifar.pool", m, (128, 64, 32, 32), {"k": 2}, quick=False))
    for m in ("fwd", "fwdbwd"):
        cases.append(Case("batch_norm", "cifar.bn", m, (128, 64, 32, 32), {}, quick=(m == "fwdbwd")))
    for m in ("fwd", "fwdbwd"):
        cases.append(Case("unfold", "keras.conv2", m, (32, 32, 28, 28), {"k": 3, "padding": 1}))
    # the relaxed receptive field paper (pyconvnet/experiments/relaxed_mnist.py): RelaxedConv(1 -> 8, n -> n, k=9), batch 128,
    # on 28x28 MNIST (n = 784) and the --quick 14x14 variant (n = 196). Only the smallest is in --quick.
    cases += _relaxed("relaxed_conv", "relaxed_mnist.n784", 28, quick=())
    cases += _relaxed("relaxed_conv", "relaxed_mnist.n196", 14, quick=("fwdbwd",))
    cases += _relaxed("receptive_conv", "relaxed_mnist.n784.grid", 28, field="grid", quick=())
    cases += _relaxed("receptive_conv", "relaxed_mnist.n784.random", 28, field="random", quick=())
    return cases


# -------------------------------------------------------------------- data
def _index_table(case: Case, rng) -> np.ndarray:
    """The receptive_conv row's int64 (n_out, k) table."""
    n_in, n_out, k = case.x[2], case.params["n_out"], case.params["k"]
    if case.params["field"] == "grid":
        h, w = case.params["image"]
        r = np.arange(h)[:, None, None, None] + (np.arange(3)[None, None, :, None] - 1)
        c = np.arange(w)[None, :, None, None] + (np.arange(3)[None, None, None, :] - 1)
        r, c = np.broadcast_arrays(r, c)
        idx = np.where((r >= 0) & (r < h) & (c >= 0) & (c < w), r * w + c, -1).reshape(h * w, 9)
        assert idx.shape == (n_out, k), (idx.shape, n_out, k)
    else:  # "random": slot 0 the centre (n_in == n_out), the others uniform
        idx = np.concatenate([np.arange(n_out)[:, None] % n_in, rng.integers(0, n_in, (n_out, k - 1))], axis=1)
    return np.ascontiguousarray(idx, dtype=np.int64)


def make_data(case: Case) -> dict:
    """Deterministic float32 inputs (seeded by the row's op and label)."""
    rng = np.random.default_rng(zlib.crc32(f"{case.op} {case.label}".encode()))
    f32 = np.float32
    d = {"x": rng.standard_normal(case.x, dtype=f32)}
    if case.op in RELAXED_OPS:
        n, c, n_in = case.x
        o, n_out, k = case.params["out"], case.params["n_out"], case.params["k"]
        if case.op == "relaxed_conv":  # L = softmax(R, axis=input), R ~ N(0, 1): dense, non-uniform
            L = rng.standard_normal((n_in, n_out, k), dtype=f32)
            L -= L.max(axis=0, keepdims=True)
            np.exp(L, out=L)
            L /= L.sum(axis=0, keepdims=True)
            d["L"] = L
        else:
            d["index"] = _index_table(case, rng)
        d["w"] = rng.standard_normal((o, c, k), dtype=f32) / f32(np.sqrt(c * k))
        d["b"] = rng.standard_normal(o, dtype=f32)
        d["gy"] = rng.standard_normal((n, o, n_out), dtype=f32)
        return d
    n, c, h, w = case.x
    oh, ow = case.out_hw()
    if case.op == "conv2d":
        o, k = case.params["out"], case.params["k"]
        d["w"] = (rng.standard_normal((o, c, k, k), dtype=f32) / f32(np.sqrt(c * k * k)))
        d["b"] = rng.standard_normal(o, dtype=f32)
        d["gy"] = rng.standard_normal((n, o, oh, ow), dtype=f32)
    elif case.op in ("max_pool2d", "avg_pool2d"):
        d["gy"] = rng.standard_normal((n, c, oh, ow), dtype=f32)
    elif case.op == "batch_norm":
        d["gamma"] = (1.0 + 0.1 * rng.standard_normal(c, dtype=f32)).astype(f32)
        d["beta"] = rng.standard_normal(c, dtype=f32)
        d["gy"] = rng.standard_normal(case.x, dtype=f32)
    elif case.op == "unfold":
        k = case.params["k"]
        d["gy"] = rng.standard_normal((n, c * k * k, oh * ow), dtype=f32)
    return d


def slice_data(case: Case, d: dict, n: int, c: int) -> dict:
    """The first n samples and the first c 'channels' of a row's data: output channels
    for a convolution (cost is linear in both), input channels elsewhere. Used to
    time the naive reference on a piece and scale linearly."""
    s = {}
    if case.op == "conv2d" or case.op in RELAXED_OPS:
        s["x"], s["w"], s["b"], s["gy"] = d["x"][:n], d["w"][:c], d["b"][:c], d["gy"][:n, :c]
        for key in ("L", "index"):
            if key in d:
                s[key] = d[key]
    elif case.op == "batch_norm":
        s["x"], s["gy"] = d["x"][:n, :c], d["gy"][:n, :c]
        s["gamma"], s["beta"] = d["gamma"][:c], d["beta"][:c]
    elif case.op == "unfold":
        kk = case.params["k"] ** 2
        s["x"], s["gy"] = d["x"][:n, :c], d["gy"][:n, :c * kk]
    else:
        s["x"], s["gy"] = d["x"][:n, :c], d["gy"][:n, :c]
    return {k: np.ascontiguousarray(v) for k, v in s.items()}


def slice_channels(case: Case) -> int:
    """Size of the axis slice_data cuts as 'channels'."""
    return case.params["out"] if case.op == "conv2d" or case.op in RELAXED_OPS else case.x[1]


# The relaxed rows' naive loops are not linear in the batch or the channels: ref_relaxed_conv_backward
# loops over (i, j, s) for grad_L and over (o, c, s) for grad_w with the batch inside a NumPy
# reduction (and ref_receptive_conv_backward over (o, c, s, j) for grad_w), so a 1-sample slice
# scaled by N would overstate them ~N-fold. Every loop count and every reduction size is linear
# in the number of output positions n_out, though (with the batch and channels whole), up to a
# constant (grad_x's loop over (n, c, i)). So the reference is timed on m output positions
# (fit_positions) for two values of m, and T(n_out) = T(m1) + (T(m2) - T(m1)) / (m2 - m1) * (n_out - m1).
NAIVE_FIT_POSITIONS = (4, 12)


def naive_fit(case: Case):
    """(m1, m2) output-position counts of the two naive slices of a relaxed row (all samples and
    channels, affine extrapolation to n_out), or None: slice samples/channels and scale linearly."""
    if case.op not in RELAXED_OPS:
        return None
    n_out = case.params["n_out"]
    m1, m2 = (min(m, n_out) for m in NAIVE_FIT_POSITIONS)
    return (m1, m2) if m2 > m1 else None


def fit_positions(case: Case, m: int) -> np.ndarray:
    """The m output positions of a naive-fit slice: the first m of a fixed random permutation, in
    order (nested: the smaller slice is part of the larger), so that a grid table's border rows
    (with their -1 padding slots, which the naive loops skip) are not over-represented."""
    n_out = case.params["n_out"]
    return np.sort(np.random.default_rng(0).permutation(n_out)[:m])


def slice_positions(case: Case, d: dict, m: int) -> dict:
    """A relaxed row's data on m of its output positions (L[:, pos] or index[pos], grad_y[..., pos])."""
    pos = fit_positions(case, m)
    s = {k: v for k, v in d.items() if k not in ("L", "index", "gy")}
    if "L" in d:
        s["L"] = d["L"][:, pos]
    if "index" in d:
        s["index"] = d["index"][pos]
    s["gy"] = d["gy"][:, :, pos]
    return {k: np.ascontiguousarray(v) for k, v in s.items()}


# -------------------------------------------------------------------- contenders
def function_names(case: Case) -> list[str]:
    """The functional-API names a row calls."""
    fwd, bwd = {"conv2d": ("conv2d", "conv2d_backward"), "max_pool2d": ("max_pool2d", "max_pool2d_backward"),
                "avg_pool2d": ("avg_pool2d", "avg_pool2d_backward"),
                "batch_norm": ("batch_norm", "batch_norm_backward"), "unfold": ("unfold", "fold"),
                "relaxed_conv": ("relaxed_conv", "relaxed_conv_backward"),
                "receptive_conv": ("receptive_conv", "receptive_conv_backward")}[case.op]
    return [fwd, bwd] if case.mode == "fwdbwd" else [fwd]


def build_functional(case: Case, d: dict, F):
    """pyconvnet.functional, or any module with its names and signatures (the naive reference)."""
    x, gy, p = d["x"], d.get("gy"), case.params
    fwdbwd = case.mode == "fwdbwd"
    if case.op == "conv2d":
        w, b, pad = d["w"], d["b"], p.get("padding", 0)
        if not fwdbwd:
            return lambda: (F.conv2d(x, w, b, padding=pad),)

        def run():
            y = F.conv2d(x, w, b, padding=pad)
            return (y,) + tuple(F.conv2d_backward(gy, x, w, padding=pad))
        return run
    if case.op == "max_pool2d":
        k = p["k"]
        if not fwdbwd:
            return lambda: (F.max_pool2d(x, k),)

        def run():
            y, idx = F.max_pool2d(x, k, return_indices=True)
            return y, F.max_pool2d_backward(gy, idx, x.shape)
        return run
    if case.op == "avg_pool2d":
        k = p["k"]
        if not fwdbwd:
            return lambda: (F.avg_pool2d(x, k),)
        return lambda: (F.avg_pool2d(x, k), F.avg_pool2d_backward(gy, x.shape, k))
    if case.op == "batch_norm":
        g, bt = d["gamma"], d["beta"]
        c = x.shape[1]
        rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
        if not fwdbwd:
            return lambda: (F.batch_norm(x, rm, rv, g, bt, training=True),)

        def run():
            y, mean, invstd = F.batch_norm(x, rm, rv, g, bt, training=True, return_stats=True)
            return (y,) + tuple(F.batch_norm_backward(gy, x, g, mean, invstd))
        return run
    if case.op == "unfold":
        k, pad = p["k"], p.get("padding", 0)
        if not fwdbwd:
            return lambda: (F.unfold(x, k, padding=pad),)
        return lambda: (F.unfold(x, k, padding=pad), F.fold(gy, x.shape[2:], k, padding=pad))
    if case.op in RELAXED_OPS:  # (y[, grad_x, grad_L, grad_w, grad_bias]); receptive: no grad_L
        names = function_names(case)
        fwd = getattr(F, names[0])
        field_ = d["L"] if case.op == "relaxed_conv" else d["index"]
        w, b = d["w"], d["b"]
        if not fwdbwd:
            return lambda: (fwd(x, field_, w, b),)
        bwd = getattr(F, names[1])
        if case.op == "relaxed_conv" and F is functional:
            def run():  # the forward's patches reused by the backward, as the NumPy and torch contenders do
                y, P = fwd(x, field_, w, b, return_patches=True)
                return (y,) + tuple(bwd(gy, x, field_, w, patches=P))
            return run
        return lambda: (fwd(x, field_, w, b),) + tuple(bwd(gy, x, field_, w))
    raise ValueError(case.op)


def build_numpy(case: Case, d: dict):
    x, gy, p = d["x"], d.get("gy"), case.params
    fwdbwd = case.mode == "fwdbwd"
    if case.op == "conv2d":
        w, b, pad = d["w"], d["b"], p.get("padding", 0)
        if not fwdbwd:
            return lambda: (npimpl.conv2d(x, w, b, padding=pad),)

        def run():
            y, cols = npimpl.conv2d(x, w, b, padding=pad, return_cols=True)
            return (y,) + npimpl.conv2d_backward(gy, x.shape, w, cols, padding=pad)
        return run
    if case.op == "max_pool2d":
        k = p["k"]
        if not fwdbwd:
            return lambda: (npimpl.max_pool2d(x, k),)

        def run():
            y, idx = npimpl.max_pool2d_with_argmax(x, k)
            return y, npimpl.max_pool2d_backward(gy, idx, x.shape, k)
        return run
    if case.op == "avg_pool2d":
        k = p["k"]
        if not fwdbwd:
            return lambda: (npimpl.avg_pool2d(x, k),)
        return lambda: (npimpl.avg_pool2d(x, k), npimpl.avg_pool2d_backward(gy, x.shape, k))
    if case.op == "batch_norm":
        g, bt = d["gamma"], d["beta"]
        if not fwdbwd:
            return lambda: (npimpl.batch_norm_train(x, g, bt)[0],)

        def run():
            y, cache = npimpl.batch_norm_train(x, g, bt)
            return (y,) + npimpl.batch_norm_backward(gy, g, cache)
        return run
    if case.op == "unfold":
        k, pad = p["k"], p.get("padding", 0)
        if not fwdbwd:
            return lambda: (npimpl.unfold(x, k, padding=pad),)
        return lambda: (npimpl.unfold(x, k, padding=pad), npimpl.fold(gy, x.shape[2:], k, padding=pad))
    if case.op == "relaxed_conv":
        L, w, b = d["L"], d["w"], d["b"]
        if not fwdbwd:
            return lambda: (npimpl.relaxed_conv(x, L, w, b),)

        def run():
            y, patches = npimpl.relaxed_conv(x, L, w, b, return_patches=True)
            return (y,) + npimpl.relaxed_conv_backward(gy, x, L, w, patches)
        return run
    if case.op == "receptive_conv":
        index, w, b = d["index"], d["w"], d["b"]
        if not fwdbwd:
            return lambda: (npimpl.receptive_conv(x, index, w, b),)

        def run():
            y, patches = npimpl.receptive_conv(x, index, w, b, return_patches=True)
            return (y,) + npimpl.receptive_conv_backward(gy, x.shape, index, w, patches)
        return run
    raise ValueError(case.op)


def build_torch(case: Case, d: dict, torch):
    """torch.nn.functional on CPU. Forward rows take inputs that do not require grad
    (no graph is recorded); fwdbwd rows go through autograd (torch.autograd.grad, so
    nothing accumulates between calls). unfold/fold are called directly."""
    TF = torch.nn.functional
    t = {k: torch.from_numpy(v) for k, v in d.items()}
    x, gy, p = t["x"], t.get("gy"), case.params
    fwdbwd = case.mode == "fwdbwd"
    grad = torch.autograd.grad
    if case.op == "conv2d":
        w, b, pad = t["w"], t["b"], p.get("padding", 0)
        if not fwdbwd:
            return lambda: (TF.conv2d(x, w, b, padding=pad),)
        xr, wr, br = (v.detach().requires_grad_(True) for v in (x, w, b))

        def run():
            y = TF.conv2d(xr, wr, br, padding=pad)
            return (y,) + grad(y, (xr, wr, br), gy)
        return run
    if case.op in ("max_pool2d", "avg_pool2d"):
        k = p["k"]
        f = TF.max_pool2d if case.op == "max_pool2d" else TF.avg_pool2d
        if not fwdbwd:
            return lambda: (f(x, k),)
        xr = x.detach().requires_grad_(True)

        def run():
            y = f(xr, k)
            return (y,) + grad(y, (xr,), gy)
        return run
    if case.op == "batch_norm":
        c = x.shape[1]
        rm, rv = torch.zeros(c), torch.ones(c)
        if not fwdbwd:
            return lambda: (TF.batch_norm(x, rm, rv, t["gamma"], t["beta"], training=True),)
        xr, gr, br = (v.detach().requires_grad_(True) for v in (x, t["gamma"], t["beta"]))

        def run():
            y = TF.batch_norm(xr, rm, rv, gr, br, training=True)
            return (y,) + grad(y, (xr, gr, br), gy)
        return run
    if case.op == "unfold":
        k, pad = p["k"], p.get("padding", 0)
        hw = tuple(x.shape[2:])
        if not fwdbwd:
            return lambda: (TF.unfold(x, k, padding=pad),)
        return lambda: (TF.unfold(x, k, padding=pad), TF.fold(gy, hw, k, padding=pad))
    if case.op in RELAXED_OPS:
        # relaxed: P = x L as one torch.matmul (N*C_in, n_in) @ (n_in, n_out*k), then
        # y = einsum('ncjs,ocs->noj'); receptive: P = pad(x)[:, :, index] (advanced indexing,
        # -1 -> the appended zero column), the same einsum. Backward through autograd.
        w, b = t["w"], t["b"]
        n, c, n_in = x.shape
        if case.op == "relaxed_conv":
            field_ = t["L"]
            _, n_out, k = field_.shape

            def patches(xv, Lv):
                return torch.matmul(xv.reshape(n * c, n_in), Lv.reshape(n_in, n_out * k)).reshape(n, c, n_out, k)
        else:
            index = t["index"]
            field_ = torch.where(index < 0, torch.full_like(index, n_in), index)  # the table is a constant

            def patches(xv, idx):
                return TF.pad(xv, (0, 1))[:, :, idx]

        def fwd(xv, fv, wv, bv):
            return torch.einsum("ncjs,ocs->noj", patches(xv, fv), wv) + bv[:, None]
        if not fwdbwd:
            return lambda: (fwd(x, field_, w, b),)
        xr, wr, br = (v.detach().requires_grad_(True) for v in (x, w, b))
        if case.op == "relaxed_conv":
            Lr = field_.detach().requires_grad_(True)

            def run():
                y = fwd(xr, Lr, wr, br)
                return (y,) + grad(y, (xr, Lr, wr, br), gy)
            return run

        def run():
            y = fwd(xr, field_, wr, br)
            return (y,) + grad(y, (xr, wr, br), gy)
        return run
    raise ValueError(case.op)


# -------------------------------------------------------------------- validation
def compare(got, want, tol: float):
    """Largest |got - want| over each output, relative to that output's largest |want|.
    Returns (ok, worst_error, message)."""
    got = [np.asarray(g.detach().numpy() if hasattr(g, "detach") else g) for g in got]
    if len(got) != len(want):
        return False, float("inf"), f"{len(got)} outputs, expected {len(want)}"
    worst = 0.0
    for i, (g, w) in enumerate(zip(got, want)):
        w = np.asarray(w)
        if g.shape != w.shape:
            return False, float("inf"), f"output {i}: shape {g.shape}, expected {w.shape}"
        if not np.all(np.isfinite(g)):
            return False, float("inf"), f"output {i}: non-finite values"
        scale = float(np.max(np.abs(w))) if w.size else 0.0
        err = float(np.max(np.abs(g.astype(np.float64) - w.astype(np.float64)))) if w.size else 0.0
        rel = err / scale if scale > 0 else err
        worst = max(worst, rel)
        if rel > tol:
            return False, worst, f"output {i}: max error {err:.3g} = {rel:.3g} of max |value| {scale:.3g} > {tol:g}"
    return True, worst, ""
