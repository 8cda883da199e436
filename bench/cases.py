"""The kernel rows: shapes, input data, FLOP/byte counts, and how each contender runs them.

A row is one (op, shape, mode) with mode ``fwd`` or ``fwdbwd``. Every contender's
builder returns a zero-argument callable whose return value is a tuple of
arrays, in the same order for every contender (e.g. conv fwdbwd: y, grad_x,
grad_weight, grad_bias), so one comparison validates any contender against
pyconvnet.functional.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from . import npimpl


@dataclass(frozen=True)
class Case:
    op: str      # conv2d | max_pool2d | avg_pool2d | batch_norm | unfold
    label: str   # e.g. lenet.conv1
    mode: str    # fwd | fwdbwd
    x: tuple     # input shape (N, C, H, W)
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
        """Conv FLOPs: forward 2*N*O*OH*OW*C*kh*kw; forward+backward 3x that. None for other ops."""
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
        for the memory-bound rows. Index arrays and workspaces are not counted."""
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
    return cases


# -------------------------------------------------------------------- data
def make_data(case: Case) -> dict:
    """Deterministic float32 inputs (seeded by the row's op and label)."""
    rng = np.random.default_rng(zlib.crc32(f"{case.op} {case.label}".encode()))
    n, c, h, w = case.x
    f32 = np.float32
    d = {"x": rng.standard_normal(case.x, dtype=f32)}
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
    if case.op == "conv2d":
        s["x"], s["w"], s["b"], s["gy"] = d["x"][:n], d["w"][:c], d["b"][:c], d["gy"][:n, :c]
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
    return case.params["out"] if case.op == "conv2d" else case.x[1]


# -------------------------------------------------------------------- contenders
def function_names(case: Case) -> list[str]:
    """The functional-API names a row calls."""
    fwd, bwd = {"conv2d": ("conv2d", "conv2d_backward"), "max_pool2d": ("max_pool2d", "max_pool2d_backward"),
                "avg_pool2d": ("avg_pool2d", "avg_pool2d_backward"),
                "batch_norm": ("batch_norm", "batch_norm_backward"), "unfold": ("unfold", "fold")}[case.op]
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
