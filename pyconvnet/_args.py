"""Argument checking shared by every public function: errors name the argument,
what it got and what was expected.

This module is a leaf: it must not import anything else from pyconvnet (every
other module may import it). tests/test_architecture.py enforces the rule for
the whole package: imports only point down the layers of docs/architecture.md."""
from __future__ import annotations

import operator

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# Kernel sizes, strides, paddings, dilations: the C++ side rejects anything larger
# (sizes feed 32-bit BLAS and must not overflow int64 products).
MAX_GEOMETRY = 2**30


def as_float(v, name: str) -> float:
    """A Python float, or a ValueError naming the argument."""
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a number, got bool {v!r}")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise TypeError(f"{name}: expected a number, got {v!r}") from None


def _python_numbers(a) -> bool:
    """Whether a (nested) list holds Python numbers, not NumPy arrays or scalars whose
    dtype the caller chose (judged by its first leaf)."""
    while isinstance(a, (list, tuple)) and len(a):
        a = a[0]
    return not isinstance(a, (np.ndarray, np.generic))


def float_array(a, name: str, dtype=None) -> np.ndarray:
    """``a`` as a float32/float64 ndarray (never copied unless needed).

    With ``dtype`` given, an array ``a`` must already have it (mixing precisions is an
    error, not a silent cast). Python lists, tuples and numbers are not arrays yet:
    they become ``dtype``, or float32 without one (torch's default dtype), never
    NumPy's float64 that the float32 weights would then reject."""
    if isinstance(a, (list, tuple, int, float)) and not isinstance(a, bool) and _python_numbers(a):
        try:
            return np.ascontiguousarray(a, dtype=dtype or np.float32)
        except (TypeError, ValueError):
            raise TypeError(f"{name}: expected an array of numbers, got a {type(a).__name__} that NumPy cannot "
                            f"convert to {np.dtype(dtype or np.float32)}") from None
    arr = np.asarray(a)
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected a float32 or float64 array, got dtype {arr.dtype}")
    if dtype is not None and arr.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {np.dtype(dtype)} (the dtype of x), got {arr.dtype}")
    # Contiguous here, not in pybind11: its convert pass would try the float64
    # overload first and silently upcast a non-contiguous float32 array.
    return arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)


def check_ndim(a: np.ndarray, name: str, ndims, layout: str) -> None:
    if np.ndim(a) not in (ndims if isinstance(ndims, tuple) else (ndims,)):
        raise ValueError(f"{name}: expected a {layout} array, got shape {tuple(np.shape(a))}")


def as_int(v, name: str) -> int:
    if type(v) is int:  # the common case first: layers call this on every step
        return v
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}: expected an int, got bool {v!r}")
    try:
        return operator.index(v)
    except TypeError:
        raise TypeError(f"{name}: expected an int or a pair of ints, got {v!r}") from None


def positive_int(v, name: str, minimum: int = 1) -> int:
    """An int >= ``minimum`` (1: positive), or a TypeError/ValueError naming ``name``."""
    v = as_int(v, name)
    if v < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name}: expected {what}, got {v}")
    return v


def float_dtype(dtype, name: str = "dtype") -> np.dtype:
    """``dtype`` as np.float32 or np.float64, or a TypeError naming ``name``."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"{name}: expected float32 or float64, got {dtype!r}") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"{name}: expected float32 or float64, got {dt}")
    return dt


def flag(v, name: str) -> bool:
    """A bool (numpy bools too), or a TypeError naming ``name``."""
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{name}: expected a bool, got {v!r}")
    return bool(v)


def pair(v, name: str, minimum: int) -> tuple[int, int]:
    """int-or-pair, as torch accepts: 3 -> (3, 3); (2, 3) -> (2, 3)."""
    if type(v) is tuple and len(v) == 2 and type(v[0]) is int and type(v[1]) is int \
            and minimum <= v[0] <= MAX_GEOMETRY and minimum <= v[1] <= MAX_GEOMETRY:
        return v  # an already checked pair (layers pass their own on every step)
    if isinstance(v, (tuple, list, np.ndarray)):
        vals = list(v)
        if len(vals) == 1:
            vals = vals * 2
        if len(vals) != 2:
            raise ValueError(f"{name}: expected an int or a pair of ints, got {v!r}")
        out = (as_int(vals[0], name), as_int(vals[1], name))
    else:
        i = as_int(v, name)
        out = (i, i)
    if min(out) < minimum:
        what = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{name}: expected {what} values, got {v!r}")
    if max(out) > MAX_GEOMETRY:
        raise ValueError(f"{name}: values above {MAX_GEOMETRY} are not supported, got {v!r}")
    return out


def batched(x: np.ndarray, name: str):
    """(C,H,W) -> (1,C,H,W) like torch's unbatched input; returns (x4, was_unbatched)."""
    check_ndim(x, name, (3, 4), "(N, C, H, W) or (C, H, W)")
    return (x[None], True) if x.ndim == 3 else (x, False)


def out_array(out, name: str, shape: tuple, dtype, *inputs) -> np.ndarray | None:
    """A caller's buffer for a result written in place: None, or exactly a writeable C-contiguous
    ``dtype`` array of ``shape`` sharing no memory with ``inputs``."""
    if out is None:
        return None
    if not isinstance(out, np.ndarray) or out.dtype != dtype:
        got = f"{out.dtype} array" if isinstance(out, np.ndarray) else type(out).__name__
        raise TypeError(f"{name}: expected a {np.dtype(dtype)} array of shape {shape}, got {got}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {out.shape}")
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise ValueError(f"{name}: expected a writeable C-contiguous array")
    for a in inputs:
        if a is not None and np.may_share_memory(out, a):
            raise ValueError(f"{name}: must not overlap the inputs")
    return out
