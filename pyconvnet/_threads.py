"""The one thread knob: OpenMP loops and BLAS calls both follow it.

The bundled OpenBLAS always runs single-threaded; every parallel loop (including
the split of large GEMMs) is ours, so the two never oversubscribe the cores.
The default is what OpenMP picks: ``OMP_NUM_THREADS`` if set, else all cores.
"""
import os

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
