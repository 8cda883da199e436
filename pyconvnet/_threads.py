"""The one thread knob: OpenMP loops and BLAS calls both follow it.

The bundled OpenBLAS always runs single-threaded; every parallel loop (including
the split of large GEMMs) is ours, so the two never oversubscribe the cores.
The default is what OpenMP picks: ``OMP_NUM_THREADS`` if set, else all cores.
"""
import os
import warnings

import numpy  # noqa: F401 - NumPy's own BLAS loads first, so the variable below never reaches it

# The bundled OpenBLAS reads OPENBLAS_NUM_THREADS once, when _core loads it: with
# 1 it starts no worker threads at all (calling set_num_threads(1) later leaves
# them alive, polling, and on 2 cores they steal time from our OpenMP threads).
_saved = os.environ.get("OPENBLAS_NUM_THREADS")
os.environ["OPENBLAS_NUM_THREADS"] = "1"
try:
    from . import _core
finally:
    if _saved is None:
        del os.environ["OPENBLAS_NUM_THREADS"]
    else:
        os.environ["OPENBLAS_NUM_THREADS"] = _saved


def env_threads_problem(value=None):
    """What is wrong with ``OMP_NUM_THREADS`` (``value``: the variable's text; default: the
    environment's), in a user's words, or None when it is unset or valid: a positive
    integer, or OpenMP's comma list of them (the first is used at the top level)."""
    value = os.environ.get("OMP_NUM_THREADS") if value is None else value
    if value is None or value.strip() == "":
        return None
    parts = [v.strip() for v in value.split(",")]
    if all(v.isdigit() and int(v) >= 1 for v in parts):
        return None
    return (f"OMP_NUM_THREADS={value!r} is not a positive integer, so OpenMP ignores it and pyconvnet uses "
            f"{_core.get_num_threads()} threads (all cores); set it to a number such as 2, or unset it "
            f"(the command line's --threads N and set_num_threads(n) override it)")


# An invalid value is reported once, when pyconvnet is imported (OpenMP itself only
# prints a cryptic line, or nothing, and goes on with all cores).
if env_threads_problem() is not None:
    warnings.warn(env_threads_problem(), RuntimeWarning, stacklevel=2)


def set_num_threads(n: int) -> None:
    """Use ``n`` threads for every pyconvnet kernel (OpenMP and BLAS)."""
    if isinstance(n, bool):
        raise TypeError(f"set_num_threads: n must be an int, got bool {n!r}")
    if not isinstance(n, int):
        try:
            import operator

            n = operator.index(n)
        except TypeError:
            raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}") from None
    if n < 1:
        raise ValueError(f"set_num_threads: n must be >= 1, got {n}")
    _core.set_num_threads(n)


def get_num_threads() -> int:
    """Number of threads pyconvnet kernels use."""
    return _core.get_num_threads()
