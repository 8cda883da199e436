"""The CPU target of the hand-vectorised kernels, and what this machine is.

The kernels with instruction-set copies (the direct convolution, Winograd, sigmoid,
dropout) are compiled for AVX-512, AVX2 + FMA and a portable baseline; the best
target this CPU runs is used unless ``PYCONVNET_ISA`` (avx512, avx2, baseline or
auto) forces one: read once, when pyconvnet is imported. A target the CPU lacks
is an error at import, naming what is available."""
from __future__ import annotations

import os

from ._threads import _core, get_num_threads

__all__ = ["cpu_info", "ENV_ISA"]

ENV_ISA = "PYCONVNET_ISA"


def _apply_env():
    want = os.environ.get(ENV_ISA, "").strip().lower()
    if not want or want == "auto":
        return
    built, available = _core._isas()
    if want not in built:
        raise ValueError(f"{ENV_ISA}={os.environ[ENV_ISA]!r}: expected one of {', '.join(built)} or auto")
    if want not in available:
        model, _ = _core._cpu()
        raise RuntimeError(f"{ENV_ISA}={want}: this CPU ({model}) cannot run the {want} kernels; "
                           f"available: {', '.join(available)} (unset {ENV_ISA} to use the best)")
    _core._set_isa(want)


def cpu_info() -> dict:
    """What the kernels run on: ``isa`` (the target in use), ``available`` (the targets this
    CPU runs, best first), ``built`` (those in this build), ``cpu`` (model name),
    ``features`` (the CPU features the targets test), ``microarch`` (vendor, CPUID family
    and model, e.g. ``"AMD family 25 model 17 (Zen 4)"``: VMs often report only "AMD EPYC"
    as the model name), ``avx512_half_width`` (AVX-512 on 256-bit halves, as on Zen 4:
    the AVX-512 target then runs its one-broadcast-per-FMA tiles as the AVX2 copy),
    ``threads``, ``openmp``, ``blas``."""
    built, available = _core._isas()
    model, features = _core._cpu()
    microarch, half = _core._microarch()
    return {"isa": _core._isa(), "available": list(available), "built": list(built), "cpu": model,
            "features": list(features), "microarch": microarch, "avx512_half_width": bool(half),
            "threads": get_num_threads(), "openmp": bool(_core.has_openmp), "blas": _core.blas_info()}


_apply_env()
