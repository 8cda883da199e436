"""``python -m bench``: validate, then time, every row for every contender and thread count."""
from __future__ import annotations

import argparse
import importlib
import os
import re
import sys
import time

import numpy as np

from . import cases as C
from . import machine, report, training
from .timing import LoadMeter, Threads, available_cores, measure, time_once, wait_quiet

CONTENDERS = ("ours", "torch", "numpy", "naive")
TOL = 1e-4  # float32: max |error| relative to the largest |value| of each output

QUICK = dict(repeats=3, min_repeat_s=0.005, warmup_s=0.02, budget_s=1.0, gemm_n=512)
FULL = dict(repeats=7, min_repeat_s=0.05, warmup_s=0.2, budget_s=12.0, gemm_n=2048)
NAIVE_ROW_BUDGET_S = 15.0    # full mode: run the full-channel 1-sample slice when its estimate is below this
NAIVE_TOTAL_BUDGET_S = 150.0  # after this much naive time, only the minimal slices
BUSY_CORES = 0.3     # other processes using more CPU than this during a timing: flag it and time again
QUIET_WAIT_S = 15.0  # how long to wait for them to go quiet before a row (full mode)


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true",
                   help="few repeats, a subset of the shapes, the naive reference on minimal slices only")
    p.add_argument("--threads", default=None,
                   help="comma-separated thread counts (default: 1 and all available cores)")
    p.add_argument("--filter", default=None, metavar="REGEX",
                   help="only rows whose id (e.g. 'conv2d lenet.conv1 fwdbwd', 'train lenet5') matches")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats per contender and row")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                   help="output directory (default: bench/results/)")
    p.add_argument("--no-torch", action="store_true",
                   help="run without the PyTorch contender (also: PYCONVNET_BENCH_NO_TORCH=1)")
    p.add_argument("--no-naive", action="store_true", help="skip the naive reference contender")
    p.add_argument("--no-training", action="store_true", help="skip the training-epoch rows")
    p.add_argument("--isa", default=None, choices=("avx512", "avx2", "baseline"),
                   help="force the kernels' CPU target (also for the training workers: PYCONVNET_ISA) and cap "
                        "torch's oneDNN, ATen and MKL, and the OpenBLAS of pyconvnet and NumPy "
                        "(OPENBLAS_CORETYPE), at the same instructions, so one machine measures the "
                        "targets it can run for every contender; default: the best this CPU runs")
    p.add_argument("--reference", default="pyconvnet.reference",
                   help="module of the naive loop reference (default: pyconvnet.reference)")
    args = p.parse_args(argv)
    if args.isa and cap_blas_isa(args.isa) and argv is None:
        # OpenBLAS picks its kernels when it loads, and NumPy's (imported above) and ours
        # (with pyconvnet) have: run again with the cap in the environment
        sys.stdout.flush()
        os.execv(sys.executable, [sys.executable, "-m", "bench", *sys.argv[1:]])
    if os.environ.get("PYCONVNET_BENCH_NO_TORCH", "") not in ("", "0"):
        args.no_torch = True
    if args.threads is None:
        cores = available_cores()
        args.thread_counts = sorted({1, cores})
    else:
        try:
            args.thread_counts = [int(t) for t in args.threads.split(",") if t.strip()]
        except ValueError:
            p.error(f"--threads: expected comma-separated ints, got {args.threads!r}")
        if not args.thread_counts or min(args.thread_counts) < 1:
            p.error(f"--threads: expected positive ints, got {args.threads!r}")
    if args.repeats is not None and args.repeats < 1:
        p.error("--repeats must be >= 1")
    if args.isa:
        from pyconvnet import _core

        if args.isa not in _core._isas()[1]:
            p.error(f"--isa {args.isa}: this CPU ({_core._cpu()[0]}) cannot run it; available: "
                    f"{', '.join(_core._isas()[1])}")
        _core._set_isa(args.isa)
        os.environ["PYCONVNET_ISA"] = args.isa  # the training workers' processes
        cap_torch_isa(args.isa)
    return args


# What a CPU without the forced-away instructions would give PyTorch: oneDNN's convolutions,
# ATen's vectorised loops and MKL's GEMM each pick their own ISA from the CPU, so a forced
# target that capped only our kernels would race our AVX2 code against torch's AVX-512 one.
TORCH_ISA_CAPS = {  # values in machine.TORCH_ISA_VARS' order: oneDNN, ATen, MKL
    "avx2": dict(zip(machine.TORCH_ISA_VARS, ("AVX2", "avx2", "AVX2"))),
    "baseline": dict(zip(machine.TORCH_ISA_VARS, ("SSE41", "default", "SSE4_2"))),
}


# OpenBLAS's kernels for a forced target (OPENBLAS_CORETYPE, read by pyconvnet's and NumPy's
# OpenBLAS when they load): on an AVX-512 machine a forced-AVX2 run left them on their AVX-512
# (SkylakeX) kernels, so every GEMM-bound row (mlp3, the linear layers, im2col convs) still
# ran AVX-512 code. Haswell's are what OpenBLAS runs on AVX2 CPUs (Zen 1-3 included).
BLAS_ISA_CAPS = {"avx2": "Haswell", "baseline": "Nehalem"}


def cap_blas_isa(isa):
    """Sets OPENBLAS_CORETYPE for the forced target unless the user set it; returns whether it
    set it (then the BLAS libraries already loaded by this process are not capped)."""
    core = BLAS_ISA_CAPS.get(isa)
    if core is None or "OPENBLAS_CORETYPE" in os.environ:
        return False
    os.environ["OPENBLAS_CORETYPE"] = core
    return True


def cap_torch_isa(isa):
    """Caps the torch contender (this process and the training workers: environment variables
    read when torch loads) at the forced target; a variable the user set is kept. Returns the
    variables set. Must run before torch is imported."""
    if "torch" in sys.modules and isa in TORCH_ISA_CAPS:
        raise RuntimeError("cap_torch_isa: torch is already imported; its ISA can no longer be capped")
    caps = {k: v for k, v in TORCH_ISA_CAPS.get(isa, {}).items() if k not in os.environ}
    os.environ.update(caps)
    return caps


SETTLE_NOTE = ("before every timed contender the bench pauses (0.2 s with >1 thread): NumPy's OpenBLAS worker "
               "threads keep spinning ~50 ms after a call, and while they do a 2-thread pyconvnet kernel on 2 cores "
               "runs up to ~9x slower (4 ms scheduler-quantum stalls at its OpenMP barriers)")


def settle(threads):
    """Let idle thread pools (NumPy's OpenBLAS, the OpenMP runtimes) stop spinning before timing."""
    time.sleep(0.2 if threads > 1 else 0.02)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def _import_torch(args, notes):
    if args.no_torch:
        notes.append("PyTorch contender disabled (--no-torch / PYCONVNET_BENCH_NO_TORCH)")
        return None
    try:
        import torch
    except ImportError as e:
        notes.append(f"PyTorch not importable ({e}): torch column skipped")
        return None
    return torch


def _import_reference(args, notes):
    if args.no_naive:
        notes.append("naive reference disabled (--no-naive)")
        return None, "disabled (--no-naive)"
    try:
        return importlib.import_module(args.reference), None
    except ImportError as e:
        msg = f"{args.reference} not importable ({e})"
        notes.append(f"naive column skipped: {msg}")
        return None, msg


def _rate(entry, case, ceiling):
    t = entry["time"]["median_s"]
    if case.flops:
        entry["gflops"] = case.flops / t / 1e9
        if ceiling:
            entry["frac_ceiling"] = entry["gflops"] / ceiling
    if case.min_bytes:
        entry["gbps_min_traffic"] = case.min_bytes / t / 1e9


class Runner:
    def __init__(self, args, torch, ref, ref_msg):
        import pyconvnet.functional as F

        self.F = F
        self.args = args
        self.torch = torch
        self.ref = ref
        self.ref_msg = ref_msg
        self.cfg = dict(QUICK if args.quick else FULL)
        if args.repeats is not None:
            self.cfg["repeats"] = args.repeats
        self.naive_cache = {}
        self.naive_spent = 0.0

    def _time(self, fn):
        c = self.cfg
        return measure(fn, c["repeats"], c["min_repeat_s"], c["warmup_s"], c["budget_s"])

    def _timed(self, fn, threads):
        """Time fn, noting the CPU other processes used meanwhile; if they used more than
        BUSY_CORES, wait for quiet (full mode) and time it again, keeping the quieter take."""
        out = {}
        for attempt in range(1 if self.args.quick else 2):
            if attempt:
                waited, _ = wait_quiet(max_wait_s=QUIET_WAIT_S)
                out["quiet_wait_s"] = out.get("quiet_wait_s", 0.0) + waited
            settle(threads)
            meter = LoadMeter()
            t = self._time(fn)
            load = meter.cores()
            if "time" not in out or (load is not None and load < out["foreign_load_cores"]):
                out["time"], out["foreign_load_cores"] = t, load
            out["takes"] = attempt + 1
            if load is None or load <= BUSY_CORES:
                break
        return out

    def run_case(self, case, threads, ceiling):
        d = C.make_data(case)
        row = {"id": case.id, "op": case.op, "label": case.label, "mode": case.mode, "threads": threads,
               "x": list(case.x), "params": case.params, "flops": case.flops, "min_bytes": case.min_bytes,
               "contenders": {}}
        ents = row["contenders"]
        fns, outs = {}, {}
        builders = {"ours": lambda: C.build_functional(case, d, self.F),
                    "numpy": lambda: C.build_numpy(case, d)}
        if self.torch is not None:
            builders["torch"] = lambda: C.build_torch(case, d, self.torch)
        else:
            ents["torch"] = {"status": "skipped", "reason": "torch not available"}
        # 1. validate: run every contender once, compare against pyconvnet.functional
        for name in ("ours", "torch", "numpy"):
            if name not in builders:
                continue
            try:
                fns[name] = builders[name]()
                outs[name] = tuple(np.array(o.detach().numpy() if hasattr(o, "detach") else o, copy=True)
                                   for o in fns[name]())
            except Exception as e:  # a contender that cannot run this row
                ents[name] = {"status": "error", "error": f"{type(e).__name__}: {e}"}
                fns.pop(name, None)
        if "ours" not in outs:
            return row
        for name in ("torch", "numpy"):
            if name in outs:
                ok, err, msg = C.compare(outs[name], outs["ours"], TOL)
                ents[name] = {"status": "ok" if ok else "invalid", "validated": ok, "max_rel_err": err,
                              "tol": TOL, "validated_against": "ours"}
                if msg:
                    ents[name]["error"] = msg
        # ours is the baseline; cross-check it against an independent implementation
        cross = "torch" if "torch" in outs else ("numpy" if "numpy" in outs else None)
        ok, err, msg = C.compare(outs["ours"], outs[cross], TOL) if cross else (False, None, "nothing to check against")
        ents["ours"] = {"status": "ok", "validated": ok, "max_rel_err": err, "tol": TOL, "validated_against": cross}
        if msg:
            ents["ours"]["error"] = msg
        del outs
        # 2. warm up and time, one contender after the other
        for name in ("ours", "torch", "numpy"):
            if name in fns and (name == "ours" or ents[name]["validated"]):
                ents[name].update(self._timed(fns[name], threads))
                ents[name]["time_basis"] = "full batch"
                _rate(ents[name], case, ceiling)
        fns.clear()
        # 3. the naive reference: once per row (pure-Python loops, thread-independent), scaled
        ents["naive"] = self.naive(case, d, threads, ceiling)
        return row

    def naive(self, case, d, threads, ceiling):
        if self.ref is None:
            return {"status": "skipped", "reason": self.ref_msg}
        if case.id in self.naive_cache:
            e = dict(self.naive_cache[case.id])
            e["reused"] = True
            if "time" in e:
                _rate(e, case, ceiling)
            return e
        e = self._naive_measure(case, d)
        e["measured_at_threads"] = threads
        if "time" in e:
            _rate(e, case, ceiling)
        self.naive_cache[case.id] = e
        return e

    def _naive_attempt(self, case, small):
        """Run the reference once on a slice, timed, and validate it against ours on the same slice."""
        fn = C.build_functional(case, small, self.ref)
        t0 = time.perf_counter()
        got = fn()
        t = time.perf_counter() - t0
        want = C.build_functional(case, small, self.F)()
        ok, err, msg = C.compare(got, want, TOL)
        return fn, t, ok, err, msg

    @staticmethod
    def _retime(fn, t):
        """A few plain calls of a validated slice; slower slices keep the validation call's time."""
        if t <= 5.0:
            return time_once(fn, 1 if t > 1.0 else (3 if t > 0.05 else 5))
        return {"median_s": t, "min_s": t, "max_s": t, "repeats": 1, "inner": 1, "warmup_calls": 0,
                "samples_s": [t]}

    def _naive_fit(self, case, d, sizes):
        """Relaxed rows: the reference on m1 and m2 output positions (cases.fit_positions; every
        sample and channel), extrapolated affinely to n_out (see cases.naive_fit)."""
        full = case.params["n_out"]
        points, spent = [], 0.0
        try:
            for m in sizes:
                fn, t, ok, err, msg = self._naive_attempt(case, C.slice_positions(case, d, m))
                spent += t
                if not ok:
                    self.naive_spent += spent
                    return {"status": "invalid", "validated": False, "max_rel_err": err, "tol": TOL,
                            "validated_against": f"ours (same slice: {m} output positions)", "error": msg}
                tm = self._retime(fn, t)
                if t <= 5.0:
                    spent += sum(tm["samples_s"])
                points.append((m, err, tm))
        except NotImplementedError as e:
            return {"status": "skipped", "reason": f"reference: NotImplementedError: {e}"}
        except Exception as e:
            return {"status": "error", "error": f"{type(e).__name__}: {e}"}
        self.naive_spent += spent
        (m1, _, t1), (m2, _, t2) = points
        slope = max((t2["median_s"] - t1["median_s"]) / (m2 - m1), 0.0)
        intercept = max(t1["median_s"] - slope * m1, 0.0)
        est = intercept + slope * full
        scale = est / t2["median_s"]  # the larger slice's spread, scaled to the estimate
        e = {"status": "ok", "validated": True, "max_rel_err": max(p[1] for p in points), "tol": TOL,
             "validated_against": "ours (same slices)",
             "slice": {"samples": case.batch, "channels": C.slice_channels(case),
                       "channels_full": C.slice_channels(case), "channel_axis": "C_out",
                       "output_positions": [m1, m2], "output_positions_full": full},
             "fit": {"model": "T(n_out) = a + b*n_out", "a_s": intercept, "b_s_per_position": slope,
                     "points": [{"output_positions": m, "median_s": tm["median_s"]} for m, _, tm in points]},
             "scale": scale, "time_measured": t2}
        e["time"] = dict(t2, median_s=est, min_s=t2["min_s"] * scale, max_s=t2["max_s"] * scale,
                         samples_s=[v * scale for v in t2["samples_s"]])
        e["time_basis"] = (f"affine fit in output positions from {m1} and {m2} of {full} (all {case.batch} samples "
                           f"and channels): {intercept * 1e3:.3g} ms + {slope * 1e3:.3g} ms/position")
        e["scaled"] = True
        return e

    def _naive_measure(self, case, d):
        missing = [f for f in C.function_names(case) if not hasattr(self.ref, f)]
        if missing:
            return {"status": "skipped", "reason": f"{self.args.reference} has no {', '.join(missing)}"}
        sizes = C.naive_fit(case)
        if sizes:
            return self._naive_fit(case, d, sizes)
        n_sub = 2 if case.op == "batch_norm" else 1
        c_full = C.slice_channels(case)

        def attempt(c):
            return self._naive_attempt(case, C.slice_data(case, d, n_sub, c))

        try:
            fn, t, ok, err, msg = attempt(1)
            c_used = 1
            spent = t
            full_ok = (not self.args.quick and t * c_full <= NAIVE_ROW_BUDGET_S
                       and self.naive_spent + t * c_full <= NAIVE_TOTAL_BUDGET_S)
            if ok and c_full > 1 and full_ok:
                fn, t, ok, err, msg = attempt(c_full)
                c_used = c_full
                spent += t
        except NotImplementedError as e:
            return {"status": "skipped", "reason": f"reference: NotImplementedError: {e}"}
        except Exception as e:
            return {"status": "error", "error": f"{type(e).__name__}: {e}"}
        e = {"status": "ok" if ok else "invalid", "validated": ok, "max_rel_err": err, "tol": TOL,
             "validated_against": "ours (same slice)"}
        if not ok:
            e["error"] = msg
            self.naive_spent += spent
            return e
        tm = self._retime(fn, t)
        if t <= 5.0:
            spent += sum(tm["samples_s"])
        self.naive_spent += spent
        scale = (case.batch / n_sub) * (c_full / c_used)
        e["slice"] = {"samples": n_sub, "channels": c_used, "channels_full": c_full,
                      "channel_axis": "C_out" if case.op == "conv2d" or case.op in C.RELAXED_OPS else "C"}
        e["scale"] = scale
        e["time_measured"] = tm
        e["time"] = dict(tm, median_s=tm["median_s"] * scale, min_s=tm["min_s"] * scale, max_s=tm["max_s"] * scale,
                         samples_s=[v * scale for v in tm["samples_s"]])
        e["time_basis"] = (f"scaled x{scale:g} from {n_sub} sample(s)"
                           + (f" and {c_used} of {c_full} channels" if c_used < c_full else ""))
        e["scaled"] = True
        return e


def main(argv=None):
    args = parse_args(argv)
    t_start = time.perf_counter()
    notes = [SETTLE_NOTE]
    torch = _import_torch(args, notes)
    ref, ref_msg = _import_reference(args, notes)
    try:  # the training rows' modules, loaded now so that they match the functional/_core loaded now
        import pyconvnet.layers  # noqa: F401
        import pyconvnet.models  # noqa: F401
    except ImportError:
        pass
    threads = Threads(torch)
    if threads.note:
        notes.append(threads.note)
    rx = re.compile(args.filter) if args.filter else None
    cases = [c for c in C.all_cases() if (c.quick or not args.quick) and (rx is None or rx.search(c.id))]
    runner = Runner(args, torch, ref, ref_msg)
    info = machine.describe(torch, threads)
    log(f"bench: {len(cases)} kernel rows, threads {args.thread_counts}, {'quick' if args.quick else 'full'}; "
        f"{info['cpu_model']}, load {info['loadavg_at_start']}")
    results = {
        "schema": 1,
        "mode": "quick" if args.quick else "full",
        "argv": sys.argv[1:] if argv is None else list(argv),
        "options": {"threads": args.thread_counts, "filter": args.filter, "tol": TOL, **runner.cfg,
                    "torch": torch is not None, "naive_module": None if ref is None else args.reference},
        "machine": info,
        "notes": notes,
        "ceiling": [],
        "rows": [],
        "training": [],
    }
    try:
        for n in args.thread_counts:
            threads.set(n)
            log(f"[threads={n}] GEMM ceiling {runner.cfg['gemm_n']}^3 ...")
            if not args.quick:
                wait_quiet(max_wait_s=QUIET_WAIT_S)
            ceil = machine.gemm_ceiling(runner.cfg["gemm_n"], torch, runner.cfg["repeats"],
                                        runner.cfg["min_repeat_s"], runner.cfg["warmup_s"], lambda: settle(n))
            ceil["threads"] = n
            results["ceiling"].append(ceil)
            ceiling = ceil["pyconvnet_linear"].get("gflops")
            log(f"[threads={n}] " + ", ".join(f"{k} {ceil[k]['gflops']:.1f} GFLOP/s" for k in
                                              ("pyconvnet_linear", "numpy_matmul", "torch_mm") if "gflops" in ceil.get(k, {})))
            for case in cases:
                waited, load = (0.0, None) if args.quick else wait_quiet(max_wait_s=QUIET_WAIT_S)
                row = runner.run_case(case, n, ceiling)
                row["quiet_wait_s"], row["foreign_load_before"] = waited, load
                results["rows"].append(row)
                log(f"[threads={n}] {report.row_line(row)}")
        if args.no_training:
            results["notes"].append("training rows disabled (--no-training)")
        else:
            results["training"] = training.run_rows(args, rx, torch is not None, log)
            loaded = (info.get("pyconvnet_core") or {}).get("sha256_16")
            seen = {e.get("pyconvnet_core_sha256_16") for r in results["training"]
                    for e in (r.get("contenders") or {}).values()} - {None}
            if loaded and seen - {loaded}:
                notes.append(f"the in-tree _core was rebuilt during this run: kernel rows used {loaded}, "
                             f"training workers {', '.join(sorted(seen))}")
    finally:
        threads.restore()
    info["loadavg_at_end"] = machine.loadavg()
    from . import timing

    results["quiet_wait_total_s"] = 180.0 - timing.QUIET_BUDGET_S[0]
    results["wall_s"] = time.perf_counter() - t_start
    paths = report.write_all(results, args.out, "bench-quick" if args.quick else "bench")
    log(f"bench: done in {results['wall_s']:.1f} s; wrote " + ", ".join(paths))
    return 0
