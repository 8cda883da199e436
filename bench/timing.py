"""Timing and the thread knobs of every contender."""
from __future__ import annotations

import gc
import os
import statistics
import time

import numpy as np


def measure(fn, repeats: int, min_repeat_s: float, warmup_s: float, budget_s: float) -> dict:
    """Warm up, then time ``repeats`` repeats of ``fn`` and return per-call seconds.

    Warm-up: calls until ``warmup_s`` has passed (at least two calls). A repeat is
    ``inner`` back-to-back calls, with ``inner`` chosen so a repeat lasts about
    ``min_repeat_s`` (so microsecond kernels are not timer noise); median/min/max are
    over repeats of the per-call time. Slow kernels get fewer repeats (at least 3)
    so one contender on one row stays within about ``budget_s``.
    """
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    calls, spent = 1, first
    while calls < 2 or spent < warmup_s:
        t0 = time.perf_counter()
        fn()
        last = time.perf_counter() - t0
        spent += last
        calls += 1
        if spent > budget_s / 2:
            break
    per_call = max(last, 1e-7)
    inner = max(1, int(min_repeat_s / per_call))
    if per_call * inner * repeats > budget_s:
        repeats = max(3, int(budget_s / (per_call * inner)))
    samples = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            samples.append((time.perf_counter() - t0) / inner)
    finally:
        if gc_was:
            gc.enable()
    return {
        "median_s": statistics.median(samples),
        "min_s": min(samples),
        "max_s": max(samples),
        "repeats": len(samples),
        "inner": inner,
        "warmup_calls": calls,
        "first_call_s": first,
        "samples_s": samples,
    }


def time_once(fn, repeats: int = 1) -> dict:
    """A few plain calls (for the naive reference, too slow to warm up at length)."""
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples),
            "repeats": len(samples), "inner": 1, "warmup_calls": 0, "samples_s": samples}


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class Threads:
    """Sets one thread count on every contender at once.

    pyconvnet: ``set_num_threads`` (its OpenMP loops and its single-threaded bundled
    OpenBLAS). torch: ``torch.set_num_threads``. NumPy: threadpoolctl limits the
    BLAS libraries that NumPy itself loaded (only those: pyconvnet's own OpenBLAS
    and torch's runtimes are left to their own knobs).
    """

    def __init__(self, torch=None):
        self.torch = torch
        self.numpy_blas = []
        self.note = None
        try:
            import threadpoolctl
        except ImportError:
            self.note = ("threadpoolctl is not installed: NumPy's BLAS ran with its default thread count "
                         "at every thread setting (numpy column not thread-limited)")
            return
        np_dir = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))  # site-packages
        np_roots = (os.path.join(np_dir, "numpy"), os.path.join(np_dir, "numpy.libs"))
        ctl = threadpoolctl.ThreadpoolController()
        for lib in ctl.lib_controllers:
            path = os.path.abspath(lib.filepath or "")
            if lib.user_api == "blas" and path.startswith(np_roots):
                self.numpy_blas.append(lib)
        self.numpy_blas_info = [lib.info() for lib in self.numpy_blas]
        self._original = [lib.num_threads for lib in self.numpy_blas]
        if not self.numpy_blas:
            self.note = "threadpoolctl found no BLAS library loaded by NumPy; numpy column not thread-limited"

    def set(self, n: int) -> None:
        import pyconvnet

        pyconvnet.set_num_threads(n)
        if self.torch is not None:
            self.torch.set_num_threads(n)
        for lib in self.numpy_blas:
            lib.set_num_threads(n)

    def restore(self) -> None:
        for lib, n in zip(self.numpy_blas, getattr(self, "_original", [])):
            lib.set_num_threads(n)


# ---------------------------------------------------------------- other processes' load
_HZ = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _snapshot():
    """(wall s, machine busy CPU s, this process's CPU s). Busy = user+nice+system+irq+softirq+steal."""
    import resource

    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
        busy = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / _HZ
    except (OSError, ValueError, IndexError):
        busy = None
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return time.perf_counter(), busy, ru.ru_utime + ru.ru_stime


class LoadMeter:
    """CPU cores used by *other* processes (and the hypervisor's steal) while it runs:
    the machine's busy time from /proc/stat minus this process's own CPU time, per
    second of wall time. Other agents share this VM; a timing taken while they ran
    is flagged (and re-taken once)."""

    def __init__(self):
        self.start = _snapshot()

    def cores(self):
        w1, b1, o1 = _snapshot()
        w0, b0, o0 = self.start
        if b0 is None or b1 is None or w1 - w0 <= 0:
            return None
        return max(0.0, ((b1 - b0) - (o1 - o0)) / (w1 - w0))


QUIET_BUDGET_S = [180.0]  # total waiting allowed in one run (set by the CLI); spent across calls


def wait_quiet(threshold=0.25, max_wait_s=20.0, probe_s=0.5):
    """Wait (at most max_wait_s, and within the run's QUIET_BUDGET_S) until other processes
    use < threshold cores over probe_s. Returns (seconds waited, last measured foreign load)."""
    t0 = time.perf_counter()
    while True:
        m = LoadMeter()
        time.sleep(probe_s)
        load = m.cores()
        waited = time.perf_counter() - t0
        if (load is None or load < threshold or waited >= max_wait_s
                or waited >= QUIET_BUDGET_S[0]):
            QUIET_BUDGET_S[0] = max(0.0, QUIET_BUDGET_S[0] - waited)
            return waited, load
