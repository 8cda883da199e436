"""The one thread knob: OpenMP loops and BLAS calls both follow it.

The bundled OpenBLAS always runs single-threaded; every parallel loop (including
the split of large GEMMs) is ours, so the two never oversubscribe the cores.
The default is what OpenMP picks: ``OMP_NUM_THREADS`` if set, else all cores.
"""
from . import _core


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
