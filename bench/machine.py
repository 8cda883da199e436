"""What the numbers were measured on, and the machine ceiling (float32 GEMM GFLOP/s)."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys

import numpy as np

from .timing import LoadMeter, available_cores, measure


# The environment variables that cap torch's instruction sets (oneDNN, ATen, MKL): set by
# ``--isa`` (bench.cli.TORCH_ISA_CAPS), recorded and reported with the machine.
TORCH_ISA_VARS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")


def _cpuinfo():
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, val = line.partition(":")
                key = key.strip()
                if key == "model name" and model is None:
                    model = val.strip()
                elif key == "flags" and not flags:
                    flags = set(val.split())
    except OSError:
        pass
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile") if f in flags]
    return model or platform.processor() or "unknown", simd


def _mem_total_gib():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        return None


def loadavg():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def _git_commit():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _file_id(path):
    """Which build of the extension was loaded (the in-tree .so may be rebuilt between runs)."""
    import hashlib

    try:
        st = os.stat(path)
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()[:16]
        mtime = datetime.datetime.fromtimestamp(st.st_mtime).astimezone().isoformat(timespec="seconds")
        return {"path": path, "sha256_16": digest, "mtime": mtime, "bytes": st.st_size}
    except OSError:
        return {"path": path}


def _flag(v):
    return bool(v()) if callable(v) else (None if v is None else bool(v))


def describe(torch=None, threads=None) -> dict:
    import pyconvnet
    from pyconvnet import _core

    model, simd = _cpuinfo()
    info = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu_model": model,
        "cpu_simd_flags": simd,
        "cores_logical": os.cpu_count(),
        "cores_available": available_cores(),
        "mem_total_gib": _mem_total_gib(),
        "loadavg_at_start": loadavg(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "pyconvnet": getattr(pyconvnet, "__version__", "?"),
        "pyconvnet_git": _git_commit(),
        "pyconvnet_blas": _core.blas_info(),
        "pyconvnet_core": _file_id(_core.__file__),
        "pyconvnet_openmp": _flag(getattr(_core, "has_openmp", None)),
        "pyconvnet_isa": _core._isa(),
        "cpu_microarch": _core._microarch()[0],
        "pyconvnet_isas_available": list(_core._isas()[1]),
        "torch": torch.__version__ if torch is not None else None,
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                          "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OPENBLAS_CORETYPE") + TORCH_ISA_VARS
                if k in os.environ},
    }
    if threads is not None:
        info["numpy_blas"] = [{k: lib.get(k) for k in ("internal_api", "version", "architecture", "filepath")}
                              for lib in getattr(threads, "numpy_blas_info", [])]
    if torch is not None:
        try:
            cfg = torch.__config__.show()
            info["torch_blas"] = "MKL" if "MKL" in cfg else ("OpenBLAS" if "OpenBLAS" in cfg.lower() else "?")
            info["torch_mkldnn"] = bool(torch.backends.mkldnn.is_available())
            info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()  # ATen's vector ISA
        except Exception as e:  # diagnostic only
            info["torch_blas"] = f"? ({e})"
    return info


def gemm_ceiling(n: int, torch, repeats: int, min_repeat_s: float, warmup_s: float, settle=None) -> dict:
    """float32 GEMM n x n x n GFLOP/s: pyconvnet.functional.linear (our bundled OpenBLAS,
    split over our threads) is the ceiling the conv rows are measured against; NumPy's
    ``@`` and torch.mm are recorded beside it for context. Each is validated against
    a float64 product on a slice of rows first."""
    import pyconvnet.functional as F

    rng = np.random.default_rng(2048)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)  # linear computes a @ b.T
    want = a[:64].astype(np.float64) @ b.T.astype(np.float64)
    bt = np.ascontiguousarray(b.T)
    flops = 2.0 * n ** 3
    out = {"n": n, "flops": flops}
    runs = {"pyconvnet_linear": lambda: F.linear(a, b), "numpy_matmul": lambda: a @ bt}
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(bt)
        runs["torch_mm"] = lambda: torch.mm(ta, tb)
    for name, fn in runs.items():
        got = fn()
        got = got.numpy() if hasattr(got, "numpy") else got
        err = float(np.max(np.abs(got[:64] - want)) / np.max(np.abs(want)))
        entry = {"validated": err < 1e-4, "max_rel_err": err}
        if entry["validated"]:
            if settle is not None:
                settle()
            meter = LoadMeter()
            entry["time"] = measure(fn, repeats, min_repeat_s, warmup_s, budget_s=10.0)
            entry["foreign_load_cores"] = meter.cores()
            entry["gflops"] = flops / entry["time"]["median_s"] / 1e9
            entry["gflops_best"] = flops / entry["time"]["min_s"] / 1e9
        out[name] = entry
    return out
