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
#
# libgomp reads its wait policy once too. Its default spins about 300,000 rounds at
# every barrier before it sleeps; when another job holds a core, the spinning thread
# keeps the core its preempted partner needs: LeNet-5 steps took 143 ms at 2 threads
# on the 2-core AMD EPYC at load 5, against 8-9 ms with 1000-3000 rounds, 14 ms
# passive and 15 ms on 1 thread. A short spin keeps the wake-up fast on an idle
# machine. OMP_WAIT_POLICY or GOMP_SPINCOUNT set by the user win.
SPINCOUNT = "3000"
_saved = {k: os.environ.get(k) for k in ("OPENBLAS_NUM_THREADS", "GOMP_SPINCOUNT")}
os.environ["OPENBLAS_NUM_THREADS"] = "1"
SPIN_APPLIED = "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ
if SPIN_APPLIED:
    os.environ["GOMP_SPINCOUNT"] = SPINCOUNT
try:
    from . import _core
finally:
    for _k, _v in _saved.items():
        if _v is None:
            os.environ.pop(_k, None)
        else:
            os.environ[_k] = _v


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
