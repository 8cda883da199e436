"""pyconvnet.cpu_info() and PYCONVNET_ISA: the kernels' CPU target, reported and forced."""
from __future__ import annotations

import os

import pyconvnet
from pyconvnet import _core

from _helpers import run_python


def test_cpu_info_reports_the_target_in_use():
    info = pyconvnet.cpu_info()
    assert info["isa"] == _core._isa() and info["isa"] in info["available"]
    assert info["available"][-1] == "baseline" and set(info["available"]) <= set(info["built"])
    assert info["cpu"] and isinstance(info["features"], list) and info["threads"] >= 1
    # the best target this CPU runs is the default
    if "PYCONVNET_ISA" not in os.environ:
        assert info["isa"] == info["available"][0]


def _env_run(code, isa):
    old = os.environ.get("PYCONVNET_ISA")
    os.environ["PYCONVNET_ISA"] = isa
    try:
        return run_python(code)
    finally:
        if old is None:
            del os.environ["PYCONVNET_ISA"]
        else:
            os.environ["PYCONVNET_ISA"] = old


def test_env_forces_a_target_and_refuses_what_the_cpu_lacks():
    p = _env_run("import pyconvnet; print(pyconvnet.cpu_info()['isa'])", "baseline")
    assert p.returncode == 0 and p.stdout.strip() == "baseline", p.stderr
    p = _env_run("import pyconvnet", "sse9")
    assert p.returncode == 1 and "PYCONVNET_ISA='sse9': expected one of" in p.stderr
    missing = [i for i in ("avx512", "avx2") if i not in pyconvnet.cpu_info()["available"]]
    if missing:
        p = _env_run("import pyconvnet", missing[0])
        assert p.returncode == 1 and f"cannot run the {missing[0]} kernels; available: " in p.stderr
    p = _env_run("import pyconvnet; print(pyconvnet.cpu_info()['isa'])", "auto")
    assert p.returncode == 0 and p.stdout.strip() == pyconvnet.cpu_info()["available"][0]


def test_switching_target_at_run_time():
    prev = _core._set_isa("baseline")
    try:
        assert _core._isa() == "baseline"
    finally:
        _core._set_isa(prev)
    import pytest

    with pytest.raises(ValueError, match="expected one of avx512, avx2, baseline"):
        _core._set_isa("neon9")


def test_microarch_names_the_cpuid_family_and_model():
    """cpu_info()['microarch'] reads CPUID, which VMs pass through even when the model
    name says only "AMD EPYC"; it must agree with /proc/cpuinfo where there is one."""
    import re

    info = pyconvnet.cpu_info()
    m = re.fullmatch(r"(\S.*?) family (\d+) model (\d+)( \((Zen[^)]*)\))?", info["microarch"])
    if info["microarch"] == "unknown":
        import platform

        assert platform.machine().lower() not in ("x86_64", "amd64")
        return
    assert m, info["microarch"]
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return
    fam = re.search(r"^cpu family\s*:\s*(\d+)", text, re.M)
    mod = re.search(r"^model\s*:\s*(\d+)", text, re.M)
    if fam and mod:
        assert (int(m.group(2)), int(m.group(3))) == (int(fam.group(1)), int(mod.group(1)))
    # half-width AVX-512 only where there is AVX-512, and only on AMD family 25 (Zen 4)
    if info["avx512_half_width"]:
        assert "avx512" in info["available"] and m.group(1) == "AMD" and m.group(2) == "25"
