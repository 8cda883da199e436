"""Finite-difference gradient checks: the one core the library and its tests share.

The scalar checked is the fake loss ``sum(forward(x) * dout)`` (llm.c's trick), so
its gradient is exactly what ``backward(dout)`` returns. Small arrays are checked
element by element with central differences; large ones along a few random unit
directions (chainer's check_backward: O(1) forward passes per direction).
Errors are scale-aware (Caffe): ``|a - n| / max(|a|, |n|, 1) <= tol``.
Use float64, and inputs away from kinks (ReLU at 0, max-pool ties).

* :func:`check_gradient`: any scalar function of an array against a claimed gradient;
* :func:`check_backward` / :func:`numerical_grads`: a layer's backward, for every
  input and parameter (also exported as ``pyconvnet.layers.check_backward``).

A leaf module: it imports nothing from pyconvnet (layers are used by duck typing)."""
from __future__ import annotations

import numpy as np

__all__ = ["numerical_gradient", "directional_derivative", "check_gradient", "numerical_grads", "check_backward"]


def _as_list(x):
    if isinstance(x, dict):
        return list(x.values()), (lambda vals: dict(zip(x.keys(), vals)))
    if isinstance(x, (list, tuple)):
        return list(x), list
    return [x], (lambda vals: vals[0])


def _loss(layer, xs, rebuild, douts, training):
    y = layer.forward(rebuild(xs), training=training)
    ys = y if isinstance(y, list) else [y]
    return sum(float(np.sum(yi * d)) for yi, d in zip(ys, douts))


def numerical_gradient(f, a, eps=1e-6):
    """Central differences of the scalar ``f()`` with respect to every element of ``a``
    (perturbed in place and restored): an array of a's shape, float64."""
    out = np.zeros(a.shape)
    flat, oflat = a.reshape(-1), out.reshape(-1)
    if not np.shares_memory(flat, a):
        raise ValueError("a: must be a contiguous array (it is perturbed in place)")
    for i in range(a.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        oflat[i] = (fp - fm) / (2 * eps)
    return out


def directional_derivative(f, a, v, eps=1e-6):
    """(f(a + eps v) - f(a - eps v)) / 2 eps: the derivative of ``f()`` along ``v``
    (``a`` perturbed in place and restored)."""
    orig = a.copy()
    a += eps * v
    fp = f()
    a[...] = orig - eps * v
    fm = f()
    a[...] = orig
    return (fp - fm) / (2 * eps)


def _fd(f, a, eps, max_elements, directions, rng):
    """(analytic-side direction or None, numeric values): elementwise if small, else directional."""
    if a.size <= max_elements:
        return None, numerical_gradient(f, a, eps)
    dirs, vals = [], []
    for _ in range(directions):
        v = rng.standard_normal(a.shape)
        v /= np.linalg.norm(v)
        dirs.append(v)
        vals.append(directional_derivative(f, a, v, eps))
    return dirs, np.array(vals)


def numerical_grads(layer, x, dout, training=False, eps=1e-6, max_elements=64, directions=3, rng=0):
    """Central-difference gradients of sum(forward(x) * dout) w.r.t. each input and parameter.

    Returns {"x": [per input], "params": {name: ...}}; each entry is (None, full
    gradient) for small arrays or (directions, directional derivatives)."""
    rng = np.random.default_rng(rng)
    xs, rebuild = _as_list(x)
    xs = [np.array(a, dtype=np.float64 if np.asarray(a).dtype.kind != "f" else np.asarray(a).dtype) for a in xs]
    douts = dout if isinstance(dout, list) else [dout]
    f = lambda: _loss(layer, xs, rebuild, douts, training)  # noqa: E731
    out = {"x": [_fd(f, a, eps, max_elements, directions, rng) for a in xs], "params": {}}
    for name, p in layer.params.items():
        out["params"][name] = _fd(f, p, eps, max_elements, directions, rng)
    return out


def _compare(analytic, numeric, tol, what):
    dirs, num = numeric
    analytic = np.asarray(analytic, dtype=np.float64)
    if dirs is None:
        a, n = analytic, num
        if a.shape != n.shape:
            raise AssertionError(f"{what}: gradient shape {a.shape}, expected {n.shape}")
    else:
        a = np.array([np.sum(analytic * v) for v in dirs])
        n = num
    err = np.abs(a - n) / np.maximum(np.maximum(np.abs(a), np.abs(n)), 1.0)
    worst = float(err.max()) if err.size else 0.0
    if worst > tol:
        i = int(np.argmax(err))
        where = f"flat index {i}" if dirs is None else f"the directional derivative along random direction {i}"
        raise AssertionError(f"{what}: backward disagrees with finite differences: relative error {worst:.3g} > "
                             f"{tol:g} at {where} (analytic {float(a.reshape(-1)[i])!r}, "
                             f"numeric {float(n.reshape(-1)[i])!r})")
    return worst


def check_gradient(f, a, analytic, *, eps=1e-6, tol=1e-6, max_elements=64, directions=3, rng=0, what="gradient"):
    """Asserts that ``analytic`` is the gradient of the scalar ``f()`` with respect to the
    array ``a`` (which ``f`` reads and this perturbs in place): element by element for at
    most ``max_elements`` elements, else along ``directions`` random unit directions.
    Raises AssertionError naming ``what``; returns the worst scale-aware error."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    analytic = np.asarray(analytic)
    if analytic.shape != a.shape:
        raise AssertionError(f"{what}: gradient shape {analytic.shape}, expected {a.shape}")
    return _compare(analytic, _fd(f, a, eps, max_elements, directions, rng), tol, what)


def check_backward(layer, x, training=False, *, dout=None, eps=1e-6, tol=1e-6, max_elements=64, directions=3,
                   rng=0, check_params=True):
    """Asserts that layer.backward matches finite differences for every input and parameter.

    x: an array, a list (multi-input layers, multi-input Graphs) or a dict (Graph).
    dout: the output gradient(s) (random if None). The layer must be deterministic
    across forward calls (not Dropout in training mode). Returns the worst error."""
    rng_ = np.random.default_rng(rng)
    xs, rebuild = _as_list(x)
    y = layer.forward(rebuild(xs), training=training)
    ys = y if isinstance(y, list) else [y]
    if dout is None:
        dout = [rng_.standard_normal(yi.shape) for yi in ys]
    douts = dout if isinstance(dout, list) else [dout]
    douts = [np.asarray(d, dtype=yi.dtype) for d, yi in zip(douts, ys)]
    gx = layer.backward(douts if isinstance(y, list) else douts[0])
    gxs = [np.array(g) for g in (gx if isinstance(gx, list) else [gx])]
    gparams = {k: v.copy() for k, v in layer.grads.items()}
    num = numerical_grads(layer, x, douts, training, eps, max_elements, directions, rng)
    worst = 0.0
    if len(gxs) != len(num["x"]):
        raise AssertionError(f"backward returned {len(gxs)} input gradient(s), expected {len(num['x'])}")
    for i, (g, n) in enumerate(zip(gxs, num["x"])):
        worst = max(worst, _compare(g, n, tol, f"{type(layer).__name__}: grad of input {i}"))
    if check_params:
        for name, n in num["params"].items():
            worst = max(worst, _compare(gparams[name], n, tol, f"{type(layer).__name__}: grad of param {name!r}"))
    return worst
