"""``pyconvnet export CHECKPOINT --onnx FILE`` (and --safetensors), and ``predict`` / ``evaluate``
reading an .onnx model, each in a subprocess on a tiny generated MNIST-format set (--no-verify)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import pyconvnet
from pyconvnet import models
from pyconvnet.checkpoint import save_checkpoint

pytest.importorskip("onnx")

PKG_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(pyconvnet.__file__)))


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    from test_cli import write_mnist  # the same generated data set as the CLI's own tests

    base = tmp_path_factory.mktemp("cli_onnx")
    write_mnist(base / "data", n_train=20, n_test=12)
    ck = save_checkpoint(base / "lenet.npz", models.lenet5(seed=3),
                         meta={"model": "lenet5", "dataset": "mnist", "classes": [str(i) for i in range(10)]})
    bare = save_checkpoint(base / "bare.npz", models.lenet5(seed=3))
    env = {k: v for k, v in os.environ.items() if k not in ("PYCONVNET_DATA",)}
    env.update(PYTHONPATH=PKG_ROOT, HOME=str(base), OMP_NUM_THREADS="1")
    return {"base": base, "data": base / "data", "ck": ck, "bare": bare, "env": env}


def cli(sb, *args):
    return subprocess.run([sys.executable, "-m", "pyconvnet"] + [str(a) for a in args], cwd=sb["base"], env=sb["env"],
                          capture_output=True, text=True, timeout=120)


def one_line_error(r, match):
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pyconvnet: error:"), r.stderr
    assert match in lines[0], lines[0]


@pytest.fixture(scope="module")
def exported(sandbox):
    out = sandbox["base"] / "lenet.onnx"
    st = sandbox["base"] / "lenet.safetensors"
    r = cli(sandbox, "export", sandbox["ck"], "--onnx", out, "--safetensors", st)
    assert r.returncode == 0, r.stderr
    assert f"wrote {out}" in r.stdout and "input (N, 1, 28, 28)" in r.stdout and f"wrote {st}" in r.stdout
    return out, st


def test_export_writes_a_file_onnxruntime_runs(exported, sandbox):
    ort = pytest.importorskip("onnxruntime")
    out, st = exported
    s = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((3, 1, 28, 28)).astype(np.float32)
    want = models.lenet5(seed=3).forward(x)
    np.testing.assert_allclose(s.run(None, {"input": x})[0], want, rtol=1e-5, atol=1e-5)
    from pyconvnet.onnx import metadata

    assert json.loads(metadata(out)["pyconvnet.meta"])["dataset"] == "mnist"
    from pyconvnet.checkpoint import load_safetensors

    back = load_safetensors(None, st)
    np.testing.assert_array_equal(back.forward(x), want)


def test_predict_and_evaluate_accept_onnx(exported, sandbox):
    out, _ = exported
    r_npz = cli(sandbox, "predict", sandbox["ck"], "--index", 4, "--data-root", sandbox["data"], "--no-verify", "--json")
    r_onnx = cli(sandbox, "predict", out, "--index", 4, "--data-root", sandbox["data"], "--no-verify", "--json")
    assert r_onnx.returncode == 0, r_onnx.stderr
    assert json.loads(r_onnx.stdout) == json.loads(r_npz.stdout)
    e_npz = cli(sandbox, "evaluate", sandbox["ck"], "--data-root", sandbox["data"], "--no-verify")
    e_onnx = cli(sandbox, "evaluate", out, "--data-root", sandbox["data"], "--no-verify")
    assert e_onnx.returncode == 0, e_onnx.stderr
    acc = lambda text: text.split("accuracy ")[1].split("%")[0]  # noqa: E731
    assert acc(e_onnx.stdout) == acc(e_npz.stdout)


def test_export_needs_an_input_shape_without_a_data_set(sandbox):
    out = sandbox["base"] / "bare.onnx"
    one_line_error(cli(sandbox, "export", sandbox["bare"], "--onnx", out), "--input-shape")
    r = cli(sandbox, "export", sandbox["bare"], "--onnx", out, "--input-shape", "1,28,28", "--opset", 20)
    assert r.returncode == 0, r.stderr
    assert "opset 20" in r.stdout


@pytest.mark.parametrize("args, match", [
    (["--onnx", "x.onnx", "--input-shape", "1,a,28"], "--input-shape: expected C,H,W"),
    (["--onnx", "x.onnx", "--opset", "12"], "--opset: must be >= 13"),
    ([], "give --onnx FILE and/or --safetensors FILE"),
    (["--onnx", "x.onnx", "--input-shape", "3,28,28"], "--onnx: export: layer 'layers.0' (Conv2d) rejects its input"),
])
def test_export_usage_errors(sandbox, args, match, capsys):
    """In-process (the same main() the command runs; the subprocess tests above cover the wiring)."""
    from pyconvnet.cli import main

    assert main(["export", str(sandbox["ck"])] + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pyconvnet: error:") and match in err[0], err


def test_bad_onnx_model_in_predict(sandbox):
    bad = sandbox["base"] / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    one_line_error(cli(sandbox, "predict", bad, "--index", 0, "--data-root", sandbox["data"], "--no-verify"),
                   "bad.onnx: not an ONNX model")
    one_line_error(cli(sandbox, "evaluate", sandbox["base"] / "missing.onnx"), "model not found")
