"""Weight initialisers.

Every initialiser has the same signature, so a layer can call any of them (or a
user function with this signature)::

    fn(shape, rng=None, *, fan_in=None, fan_out=None, dtype=np.float32) -> np.ndarray

``rng`` is an ``np.random.Generator``, an int seed, or None (the global generator of
``pyconvnet.manual_seed``).
``fan_in``/``fan_out`` default to :func:`fans` of ``shape``; layers pass them
explicitly (a bias vector of shape ``(out,)`` is drawn with its weight's fans).
Values are always drawn in float64 and then cast, so the same seed gives the
same model in float32 and float64 (up to rounding).

==================  =========================================================
name                distribution
==================  =========================================================
``normal_fan_in``   N(0, 1/fan_in) -- Kyoto Univ. exercise §4.2.2 (variance 1/N, N = nodes
                    of the previous layer); the layers' default
``kaiming_normal``  He: N(0, gain^2/fan), gain = sqrt(2), fan = fan_in
``kaiming_uniform`` He: U(-b, b), b = gain * sqrt(3/fan)
``xavier_normal``   Glorot: N(0, gain^2 * 2/(fan_in + fan_out))
``xavier_uniform``  Glorot: U(-b, b), b = gain * sqrt(6/(fan_in + fan_out))
``uniform_fan_in``  U(-1/sqrt(fan_in), 1/sqrt(fan_in)): torch's default for
                    Conv2d / Linear (kaiming_uniform with a = sqrt(5))
``dirac``           the identity: filter o passes input channel o through its
                    centre tap (o < min(C_out, C_in)); the other filters zero
``zeros``, ``ones`` constants (the default for biases is ``zeros``)
==================  =========================================================

:func:`patch_whitening` computes a whitening convolution from data (not an
initialiser of the common signature).

``he_*`` and ``glorot_*`` are accepted as aliases of ``kaiming_*`` and ``xavier_*``.
"""
from __future__ import annotations

import math
import operator

import numpy as np

from . import _random
from ._args import float_dtype as _dtype

__all__ = [
    "as_rng", "fans", "get", "normal_fan_in", "kaiming_normal", "kaiming_uniform", "xavier_normal",
    "xavier_uniform", "uniform_fan_in", "dirac", "zeros", "ones", "patch_whitening", "INITIALIZERS",
]


def as_rng(rng=None, seed=None) -> np.random.Generator:
    """An ``np.random.Generator`` from ``rng`` (Generator, int seed or None) or ``seed``.

    A Generator is returned as is (shared, so consecutive layers draw consecutive
    numbers: pass one Generator to every layer for a reproducible model); None is the
    global generator (``pyconvnet.manual_seed``)."""
    if rng is not None and seed is not None:
        raise ValueError("rng/seed: give at most one of them")
    if seed is not None:
        rng = seed
    if rng is None or isinstance(rng, np.random.Generator):
        return rng if rng is not None else _random.global_rng()
    if isinstance(rng, (bool, np.bool_)):
        raise TypeError(f"rng: expected an np.random.Generator, an int seed or None, got {rng!r}")
    try:
        s = operator.index(rng)
    except TypeError:
        raise TypeError(f"rng: expected an np.random.Generator, an int seed or None, got {type(rng).__name__}") \
            from None
    if s < 0:
        raise ValueError(f"seed: expected a non-negative int, got {s}")
    return np.random.default_rng(s)


def _shape(shape) -> tuple:
    try:
        out = tuple(operator.index(v) for v in (shape if isinstance(shape, (tuple, list)) else (shape,)))
    except TypeError:
        raise TypeError(f"shape: expected an int or a tuple of ints, got {shape!r}") from None
    if any(v < 0 for v in out):
        raise ValueError(f"shape: expected non-negative sizes, got {shape!r}")
    return out


def fans(shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight, torch's convention.

    (out, in) -> (in, out); (out, in/groups, kh, kw) -> (in/groups*kh*kw, out*kh*kw);
    a vector (n,) -> (n, n)."""
    shape = _shape(shape)
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _fans(shape, fan_in, fan_out):
    fi, fo = fans(shape)
    fi = fi if fan_in is None else fan_in
    fo = fo if fan_out is None else fan_out
    for name, v in (("fan_in", fi), ("fan_out", fo)):
        if not v > 0:
            raise ValueError(f"{name}: expected a positive size, got {v} for shape {shape}")
    return fi, fo


def normal_fan_in(shape, rng=None, *, fan_in=None, fan_out=None, dtype=np.float32):
    """N(0, 1/fan_in): the Kyoto Univ. exercise's initialisation (variance 1/N, N = size of the previous layer)."""
    shape, dtype = _shape(shape), _dtype(dtype)
    fi, _ = _fans(shape, fan_in, fan_out)
    return (as_rng(rng).standard_normal(shape) * (1.0 / math.sqrt(fi))).astype(dtype)


def _kaiming_std(shape, fan_in, fan_out, mode, gain):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode: expected 'fan_in' or 'fan_out', got {mode!r}")
    fi, fo = _fans(shape, fan_in, fan_out)
    return float(gain) / math.sqrt(fi if mode == "fan_in" else fo)


def kaiming_normal(shape, rng=None, *, fan_in=None, fan_out=None, dtype=np.float32, mode="fan_in",
                   gain=math.sqrt(2.0)):
    """He normal: N(0, std^2), std = gain / sqrt(fan) (gain sqrt(2) suits ReLU)."""
    shape, dtype = _shape(shape), _dtype(dtype)
    std = _kaiming_std(shape, fan_in, fan_out, mode, gain)
    return (as_rng(rng).standard_normal(shape) * std).astype(dtype)


def kaiming_uniform(shape, rng=None, *, fan_in=None, fan_out=None, dtype=np.float32, mode="fan_in",
                    gain=math.sqrt(2.0)):
    """He uniform: U(-b, b), b = gain * sqrt(3 / fan) (same variance as kaiming_normal)."""
    shape, dtype = _shape(shape), _dtype(dtype)
    bound = math.sqrt(3.0) * _kaiming_std(shape, fan_in, fan_out, mode, gain)
    return as_rng(rng).uniform(-bound, bound, shape).astype(dtype)


def xavier_normal(shape, rng=None, *, fan_in=None, fan_out=None, dtype=np.float32, gain=1.0):
    """Glorot normal: N(0, gain^2 * 2 / (fan_in + fan_out))."""
    shape, dtype = _shape(shape), _dtype(dtype)
    fi, fo = _fans(shape, fan_in, fan_out)
    std = float(gain) * math.sqrt(2.0 / (fi + fo))
    return (as_rng(rng).standard_normal(shape) * std).astype(dtype)


def xavier_uniform(shape, rng=None, *, fan_in=None, fan_out=None, dtype=np.float32, gain=1.0):
    """Glorot uniform: U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out))."""
    shape, dtype = _shape(shape), _dtype(dtype)
    fi, fo = _fans(shape, fan_in, fan_out)
    bound = float(gain) * math.sqrt(6.0 / (fi + fo))
    return as_rng(rng).uniform(-bound, bound, shape).astype(dtype)


def uniform_fan_in(shape, rng=None, *, fan_in=None, fan_out=None, dtype=np.float32):
    """U(-b, b), b = 1/sqrt(fan_in): torch's default init of Conv2d and Linear weights."""
    shape, dtype = _shape(shape), _dtype(dtype)
    fi, _ = _fans(shape, fan_in, fan_out)
    bound = 1.0 / math.sqrt(fi)
    return as_rng(rng).uniform(-bound, bound, shape).astype(dtype)


def dirac(shape, rng=None, *, fan_in=None, fan_out=None, dtype=np.float32):
    """The identity convolution (torch.nn.init.dirac_): w[o, o, kh // 2, kw // 2] = 1 for
    o < min(C_out, C_in), all else 0, so ``conv(x)`` copies the first channels of x.
    ``rng`` is ignored. shape (C_out, C_in, kh, kw), or (out, in) for a Linear (an eye)."""
    shape, dtype = _shape(shape), _dtype(dtype)
    if len(shape) not in (2, 4):
        raise ValueError(f"shape: expected (C_out, C_in, kh, kw) or (out, in), got {shape}")
    w = np.zeros(shape, dtype)
    d = np.arange(min(shape[0], shape[1]))
    if len(shape) == 2:
        w[d, d] = 1
    else:
        w[d, d, shape[2] // 2, shape[3] // 2] = 1
    return w


def patch_whitening(images, kernel_size=2, eps=5e-4, dtype=np.float32):
    """Weights (2 * C * k * k, C, k, k) of a k x k convolution that whitens the k x k patches of
    ``images`` (N, C, H, W) (float, already normalised): the eigenvectors of the uncentred
    patch covariance X^T X / n, in descending eigenvalue order, each divided by
    sqrt(eigenvalue + eps), then the same filters negated (the airbench CIFAR-10 recipe's
    first layer, whose sign ambiguity the +/- pair removes). The covariance is accumulated in
    float64 over chunks of images."""
    x = np.asarray(images)
    if x.ndim != 4 or x.dtype.kind != "f":
        raise ValueError(f"images: expected a float (N, C, H, W) array, got {x.dtype} {x.shape}")
    k = int(kernel_size)
    n, c, h, w = x.shape
    if k < 1 or k > min(h, w):
        raise ValueError(f"kernel_size: expected 1..{min(h, w)} for images {x.shape}, got {kernel_size!r}")
    d = c * k * k
    cov, count = np.zeros((d, d)), 0
    for s in range(0, n, 256):
        chunk = x[s:s + 256].astype(np.float64)
        # (m, C, H-k+1, W-k+1, k, k) windows -> (patches, C*k*k) in (c, i, j) order
        win = np.lib.stride_tricks.sliding_window_view(chunk, (k, k), axis=(2, 3))
        flat = np.moveaxis(win, 1, 3).reshape(-1, d)
        cov += flat.T @ flat
        count += flat.shape[0]
    cov /= max(count, 1)
    evals, evecs = np.linalg.eigh(cov)
    order = np.argsort(evals)[::-1]
    filt = (evecs[:, order] / np.sqrt(evals[order] + eps)).T.reshape(d, c, k, k)
    return np.concatenate([filt, -filt]).astype(_dtype(dtype))


def zeros(shape, rng=None, *, fan_in=None, fan_out=None, dtype=np.float32):
    """All zeros (``rng`` is ignored, so no random numbers are consumed)."""
    return np.zeros(_shape(shape), _dtype(dtype))


def ones(shape, rng=None, *, fan_in=None, fan_out=None, dtype=np.float32):
    """All ones (``rng`` is ignored)."""
    return np.ones(_shape(shape), _dtype(dtype))


INITIALIZERS = {
    "normal_fan_in": normal_fan_in,
    "kaiming_normal": kaiming_normal,
    "kaiming_uniform": kaiming_uniform,
    "xavier_normal": xavier_normal,
    "xavier_uniform": xavier_uniform,
    "uniform_fan_in": uniform_fan_in,
    "dirac": dirac,
    "zeros": zeros,
    "ones": ones,
}
_ALIASES = {"he_normal": "kaiming_normal", "he_uniform": "kaiming_uniform",
            "glorot_normal": "xavier_normal", "glorot_uniform": "xavier_uniform"}


def get(init, name: str = "init"):
    """The initialiser called ``init`` (see the table above), or ``init`` itself if callable."""
    if callable(init):
        return init
    if isinstance(init, str):
        key = _ALIASES.get(init, init)
        if key in INITIALIZERS:
            return INITIALIZERS[key]
        raise ValueError(f"{name}: unknown initialiser {init!r}; expected one of "
                         f"{sorted(INITIALIZERS) + sorted(_ALIASES)} or a callable")
    raise TypeError(f"{name}: expected an initialiser name or a callable, got {type(init).__name__}")
