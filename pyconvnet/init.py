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
``zeros``, ``ones`` constants (the default for biases is ``zeros``)
==================  =========================================================

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
    "xavier_uniform", "zeros", "ones", "INITIALIZERS",
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
