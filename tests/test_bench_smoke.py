"""Smoke test of the benchmark harness (bench/): `python -m bench --quick` on the LeNet rows
must validate every contender and record positive timings. No timing thresholds: only that
the harness runs, checks answers and writes its outputs.

The bench runs in a subprocess against the same pyconvnet this test process imports (the
in-tree build under `python -m pytest`, the installed wheel under plain `pytest`): a copy of
bench/ goes into a temporary directory that, with pyconvnet's parent directory, makes up
PYTHONPATH, so the source tree's uncompiled package cannot shadow an installed one.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pyconvnet

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
HAVE_TORCH = importlib.util.find_spec("torch") is not None

pytestmark = pytest.mark.skipif(not (BENCH / "__main__.py").is_file(), reason="bench/ not in this checkout")


@pytest.fixture(scope="module")
def bench_env(tmp_path_factory):
    home = tmp_path_factory.mktemp("benchpkg")
    shutil.copytree(BENCH, home / "bench", ignore=shutil.ignore_patterns("results", "__pycache__", "*.pyc"))
    env = dict(os.environ)
    paths = [str(home), str(Path(pyconvnet.__file__).resolve().parent.parent)]
    env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.pop("PYCONVNET_BENCH_NO_TORCH", None)
    return home, env


def run_bench(bench_env, out, *extra, env_extra=None, filter_="lenet"):
    home, env = bench_env
    env = dict(env, **(env_extra or {}))
    cmd = [sys.executable, "-m", "bench", "--quick", "--threads", "1", "--filter", filter_, "--out", str(out), *extra]
    p = subprocess.run(cmd, cwd=home, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"bench failed ({p.returncode}):\n{p.stderr[-4000:]}"
    files = sorted(out.glob("*.json"))
    assert [f.name for f in files] == ["bench-quick.json"], files
    assert (out / "bench-quick.md").is_file()
    return json.loads(files[0].read_text())


def positive_timing(entry):
    t = entry["time"]
    return 0 < t["min_s"] <= t["median_s"] <= t["max_s"] and t["repeats"] >= 1


def check_kernel_rows(res, contenders):
    rows = res["rows"]
    assert rows, "no kernel rows ran"
    assert {r["op"] for r in rows} == {"conv2d"}
    assert {r["mode"] for r in rows} == {"fwd", "fwdbwd"}
    assert all("lenet" in r["id"] and r["threads"] == 1 for r in rows)
    for r in rows:
        c = r["contenders"]
        assert c["ours"]["status"] == "ok" and c["ours"]["validated"] is True, (r["id"], c["ours"])
        assert positive_timing(c["ours"]), r["id"]
        assert r["flops"] > 0 and c["ours"]["gflops"] > 0
        for name in contenders:
            e = c[name]
            assert e["status"] == "ok" and e["validated"] is True, (r["id"], name, e)
            assert e["max_rel_err"] <= e["tol"]
            assert positive_timing(e), (r["id"], name)
        naive = c["naive"]
        if naive["status"] == "ok":  # pyconvnet.reference present: a scaled figure from a validated slice
            assert naive["validated"] is True and naive["scaled"] is True and positive_timing(naive)
            assert naive["slice"]["samples"] < r["x"][0]
        else:
            assert naive["status"] == "skipped" and naive["reason"]
    ceiling = res["ceiling"]
    assert [c["threads"] for c in ceiling] == [1]
    assert ceiling[0]["pyconvnet_linear"]["validated"] and ceiling[0]["pyconvnet_linear"]["gflops"] > 0
    m = res["machine"]
    assert m["cpu_model"] and m["numpy"] and m["pyconvnet_blas"] and m["date"]


def check_training(res, with_torch):
    rows = res["training"]
    if not rows:  # filtered out or no hook rows
        return
    for r in rows:
        if r.get("status") == "skipped":
            assert r["reason"]
            continue
        assert r["validation"]["validated"] is True, r["validation"]
        ours = r["contenders"]["ours"]
        assert ours["status"] == "ok", ours
        assert ours["epoch_s"] > 0 and ours["peak_rss_mib"] > 0
        torch_e = r["contenders"]["torch"]
        if with_torch:
            assert torch_e["status"] == "ok" and torch_e["epoch_s"] > 0, torch_e
        else:
            assert torch_e["status"] == "skipped"


@pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed (the --no-torch path is tested below)")
def test_quick_lenet_with_torch(bench_env, tmp_path):
    res = run_bench(bench_env, tmp_path)
    assert res["mode"] == "quick" and res["options"]["torch"] is True
    assert res["machine"]["torch"]
    check_kernel_rows(res, ("torch", "numpy"))
    assert all(r["contenders"]["ours"]["validated_against"] == "torch" for r in res["rows"])
    check_training(res, with_torch=True)
    md = (tmp_path / "bench-quick.md").read_text()
    assert "torch/ours" in md and "conv2d lenet.conv1 fwd" in md
    # the README's headline tables come from the same JSON
    home, env = bench_env
    p = subprocess.run([sys.executable, "-m", "bench.headline", str(tmp_path / "bench-quick.json")], cwd=home, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    row = next(ln for ln in lines if ln.startswith("| `conv2d lenet.conv1 fwdbwd`"))
    r = next(r for r in res["rows"] if r["id"] == "conv2d lenet.conv1 fwdbwd" and r["threads"] == 1)
    assert f"| {r['contenders']['ours']['time']['median_s'] * 1e3:.3g} / " in row
    torch_s = r["contenders"]["torch"]["time"]["median_s"]
    assert f"{torch_s / r['contenders']['ours']['time']['median_s']:.2f}×" in row


def test_quick_lenet_without_torch(bench_env, tmp_path):
    res = run_bench(bench_env, tmp_path, "--no-torch")
    assert res["options"]["torch"] is False and res["machine"]["torch"] is None
    check_kernel_rows(res, ("numpy",))
    for r in res["rows"]:
        assert r["contenders"]["torch"]["status"] == "skipped"
        assert r["contenders"]["ours"]["validated_against"] == "numpy"
    check_training(res, with_torch=False)


def test_no_torch_env_var(bench_env):
    home, env = bench_env
    code = "from bench.cli import parse_args; a = parse_args(['--threads', '1,2']); print(a.no_torch, a.thread_counts)"
    p = subprocess.run([sys.executable, "-c", code], cwd=home, env=dict(env, PYCONVNET_BENCH_NO_TORCH="1"),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["True", "[1,", "2]"]


def test_quick_relaxed_row(bench_env, tmp_path):
    """The relaxed receptive-field contraction: --quick holds exactly one small row
    (relaxed_conv, n = 196, fwd+bwd), every contender validated, GFLOP/s recorded, and the naive
    reference timed on two slices of output positions and extrapolated (not scaled by the batch)."""
    extra = ("--no-training",) + (() if HAVE_TORCH else ("--no-torch",))
    res = run_bench(bench_env, tmp_path, *extra, filter_="relaxed")
    rows = res["rows"]
    assert [r["id"] for r in rows] == ["relaxed_conv relaxed_mnist.n196 fwdbwd"]
    r = rows[0]
    assert r["x"] == [128, 1, 196] and r["params"]["n_out"] == 196 and r["params"]["k"] == 9
    assert r["flops"] == 3 * (2 * 128 * 1 * 196 * 196 * 9 + 2 * 128 * 8 * 1 * 9 * 196)
    c = r["contenders"]
    assert c["ours"]["status"] == "ok" and c["ours"]["validated"] is True, c["ours"]
    assert positive_timing(c["ours"]) and c["ours"]["gflops"] > 0
    for name in ("torch", "numpy") if HAVE_TORCH else ("numpy",):
        e = c[name]
        assert e["status"] == "ok" and e["validated"] is True and e["max_rel_err"] <= e["tol"], (name, e)
        assert positive_timing(e), name
    naive = c["naive"]
    if naive["status"] == "ok":
        assert naive["validated"] is True and naive["scaled"] is True and positive_timing(naive)
        m1, m2 = naive["slice"]["output_positions"]
        assert 0 < m1 < m2 < naive["slice"]["output_positions_full"] == 196
        assert naive["slice"]["samples"] == 128
        fit = naive["fit"]
        assert naive["time"]["median_s"] == pytest.approx(fit["a_s"] + 196 * fit["b_s_per_position"])
    else:
        assert naive["status"] == "skipped" and naive["reason"]
    assert "relaxed_conv relaxed_mnist.n196 fwdbwd" in (tmp_path / "bench-quick.md").read_text()


def test_forced_isa_is_recorded_and_a_missing_one_refused(bench_env, tmp_path):
    """--isa forces the kernels' target (the portable one always exists) and the run records
    it; a target this CPU lacks is refused by name before anything runs."""
    res = run_bench(bench_env, tmp_path / "b", "--no-torch", "--no-naive", "--no-training", "--isa", "baseline",
                    filter_="conv2d lenet.conv1 fwd$")
    assert res["machine"]["pyconvnet_isa"] == "baseline"
    assert "baseline" in res["machine"]["pyconvnet_isas_available"]
    # OpenBLAS (ours and NumPy's) capped too: the bench ran again with OPENBLAS_CORETYPE set
    assert res["machine"]["env"]["OPENBLAS_CORETYPE"] == "Nehalem"
    assert "Nehalem" in res["machine"]["pyconvnet_blas"], res["machine"]["pyconvnet_blas"]
    assert "target: baseline" in (tmp_path / "b" / "bench-quick.md").read_text()
    missing = [i for i in ("avx512", "avx2") if i not in pyconvnet.cpu_info()["available"]]
    if missing:
        home, env = bench_env
        p = subprocess.run([sys.executable, "-m", "bench", "--quick", "--isa", missing[0], "--out", str(tmp_path / "c")],
                           cwd=home, env=env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 2 and f"--isa {missing[0]}: this CPU" in p.stderr


@pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")
def test_forced_isa_caps_the_torch_contender_too(bench_env, tmp_path):
    """Under --isa torch must not keep the instructions our kernels gave up (else a forced-AVX2 run
    races our AVX2 code against oneDNN's AVX-512 one): ATen, oneDNN and MKL are capped, and the
    record says so."""
    res = run_bench(bench_env, tmp_path / "t", "--no-naive", "--no-training", "--isa", "baseline",
                    filter_="conv2d lenet.conv1 fwd$")
    m = res["machine"]
    assert m["pyconvnet_isa"] == "baseline"
    assert m["torch_cpu_capability"] == "DEFAULT"
    assert m["env"]["ONEDNN_MAX_CPU_ISA"] == "SSE41" and m["env"]["MKL_ENABLE_INSTRUCTIONS"] == "SSE4_2"

    assert "ATEN_CPU_CAPABILITY=default" in (tmp_path / "t" / "bench-quick.md").read_text()
    assert any(r["contenders"]["torch"].get("time") for r in res["rows"])
