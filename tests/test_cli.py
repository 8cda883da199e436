"""Smoke tests of the ``pyconvnet`` command line, each in a subprocess, on a tiny
generated MNIST-format data set (IDX .gz files written into tmp_path).

The subprocesses never see the machine's data: HOME points into tmp_path (so the
cache is empty), PYCONVNET_DATA and XDG_CACHE_HOME are unset or point at empty
folders, and the HTTP(S) proxy is a closed local port so a download attempt fails
at once. The generated files are not the canonical MNIST, so the runs that use
them pass --no-verify (without it the SHA-256 check rejects them: tested too)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

import pyconvnet
import pytest

from data_helpers import IDX_NAMES, make_idx_set
from pyconvnet.data import write_idx
from pyconvnet.models import MODELS

# The subprocesses import the pyconvnet this test imported (installed, or the in-tree build).
PKG_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(pyconvnet.__file__)))
N_TRAIN, N_TEST = 256, 40
ERROR_PREFIX = "pyconvnet: error:"

try:
    import matplotlib  # noqa: F401

    HAVE_MPL = True
except ImportError:
    HAVE_MPL = False


def write_mnist(folder, n_train=N_TRAIN, n_test=N_TEST, seed=0):
    """MNIST-format .gz files with learnable labels (class k: a bright square at a
    class-dependent place on low noise). Returns (train labels, test labels)."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = rng.permutation(np.arange(n) % 10).astype(np.uint8)
        x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(y):
            r, c = 3 + 12 * (k // 5), 1 + 5 * (k % 5)
            x[i, r:r + 6, c:c + 6] = 255
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", x)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", y)
        out.append(y)
    return out


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """(data folder, labels, env) shared by the module: HOME, cache and network isolated."""
    base = tmp_path_factory.mktemp("cli")
    data = base / "data"
    ytr, yte = write_mnist(data)
    home = base / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYCONVNET_DATA", "XDG_CACHE_HOME", "no_proxy", "NO_PROXY")}
    env.update(HOME=str(home), MPLCONFIGDIR=str(base / "mpl"), PYTHONPATH=PKG_ROOT,
               http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9",
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    return {"base": base, "data": data, "ytr": ytr, "yte": yte, "env": env, "home": home}


# Runs the CLI exactly as `python -m pyconvnet`, after removing the system data
# folders from the search path (for the tests about data that is not found).
NO_SYSTEM = ("import runpy, pyconvnet.data._resolve as r; r.SYSTEM_ROOTS = (); "
             "runpy.run_module('pyconvnet', run_name='__main__', alter_sys=True)")


def cli(sandbox, *args, env=None, no_system=False, timeout=120):
    e = dict(sandbox["env"])
    e.update(env or {})
    cmd = [sys.executable, "-c", NO_SYSTEM] if no_system else [sys.executable, "-m", "pyconvnet"]
    return subprocess.run(cmd + [str(a) for a in args], cwd=sandbox["base"], env=e, capture_output=True,
                          text=True, timeout=timeout)


def assert_one_line_error(r, status=2, match=None):
    assert r.returncode == status, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(ERROR_PREFIX), r.stderr
    if match:
        assert re.search(match, lines[0]), lines[0]
    return lines[0]


def assert_data_not_found(r, sandbox):
    """Data-set-not-found: exit 1; the message starts with one 'pyconvnet: error:' line
    and goes on with the folders searched (the loader's explanation). The failed
    download attempt left nothing in the (temporary) cache."""
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    cache = sandbox["home"] / ".cache" / "pyconvnet"
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith(f"{ERROR_PREFIX} MNIST data set not found"), r.stderr
    assert r.stderr.count(ERROR_PREFIX) == 1
    return r.stderr


ACC_RE = re.compile(r"^(\w+) on mnist: test accuracy (\d+\.\d\d)% after 1 epoch\(s\), [\d.]+ s/epoch; "
                    r"checkpoint in (.+checkpoint\.npz)$")


@pytest.fixture(scope="module")
def lenet_run(sandbox):
    out = sandbox["base"] / "run-lenet5"
    r = cli(sandbox, "train", "lenet5", "--epochs", 1, "--limit", 256, "--data-root", sandbox["data"],
            "--out", out, "--quiet", "--no-verify")
    return r, out


# ------------------------------------------------------------------ train
def test_train_lenet5(lenet_run, sandbox):
    r, out = lenet_run
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and r.stderr.strip() == ""  # --quiet: no bar, no epoch lines
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    m = ACC_RE.match(lines[0])
    assert m and m.group(1) == "lenet5", lines[0]
    assert Path(m.group(3)) == out / "checkpoint.npz"
    for name in ("checkpoint.npz", "best.npz", "history.json"):
        assert (out / name).is_file(), name
    if HAVE_MPL:
        assert (out / "curves.png").is_file() and (out / "confusion.png").is_file()
    hist = json.loads((out / "history.json").read_text())
    assert hist["epoch"] == [1] and len(hist["train_loss"]) == 1 and len(hist["val_acc"]) == 1
    # the printed accuracy is the checkpoint's
    from pyconvnet.checkpoint import load_checkpoint

    ck = load_checkpoint(out / "checkpoint.npz")
    assert ck.meta["model"] == "lenet5" and ck.meta["dataset"] == "mnist" and ck.meta["epoch"] == 1
    assert f"{ck.meta['test_acc'] * 100:.2f}" == m.group(2)
    assert ck.optimizer_name == "SGD"
    assert not list(out.glob(".tmp-*"))  # the atomic writes left no temporaries


def test_train_not_quiet_prints_epoch_lines(sandbox):
    out = sandbox["base"] / "run-verbose"
    r = cli(sandbox, "train", "mlp3", "--limit", 64, "--data-root", sandbox["data"], "--out", out, "--no-verify",
            "--threads", 1)
    assert r.returncode == 0, r.stderr
    assert "epoch 1: loss" in r.stderr and "Traceback" not in r.stderr
    assert ACC_RE.match(r.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("model, limit", [("mlp3", 256), ("keras_cnn", 32)])
def test_train_other_models(sandbox, model, limit):
    out = sandbox["base"] / f"run-{model}"
    r = cli(sandbox, "train", model, "--epochs", 1, "--limit", limit, "--data-root", sandbox["data"], "--out", out,
            "--quiet", "--no-verify")
    assert r.returncode == 0, r.stderr
    m = ACC_RE.match(r.stdout.strip())
    assert m and m.group(1) == model, r.stdout
    assert (out / "checkpoint.npz").is_file() and (out / "history.json").is_file()
    if HAVE_MPL:
        assert (out / "curves.png").is_file()


def test_train_data_from_env_var(sandbox):
    """No --data-root: $PYCONVNET_DATA is used."""
    out = sandbox["base"] / "run-env"
    r = cli(sandbox, "train", "mlp3", "--limit", 32, "--out", out, "--quiet", "--no-verify",
            env={"PYCONVNET_DATA": str(sandbox["data"])})
    assert r.returncode == 0, r.stderr
    assert ACC_RE.match(r.stdout.strip())


def test_train_same_seed_same_checkpoint(sandbox, lenet_run):
    """Two CLI runs with the same --seed write the same weights."""
    out = sandbox["base"] / "run-lenet5-again"
    r = cli(sandbox, "train", "lenet5", "--epochs", 1, "--limit", 256, "--data-root", sandbox["data"],
            "--out", out, "--quiet", "--no-verify")
    assert r.returncode == 0, r.stderr
    with np.load(lenet_run[1] / "checkpoint.npz") as a, np.load(out / "checkpoint.npz") as b:
        for k in a.files:
            if k.startswith("model/"):
                np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ------------------------------------------------------------------ evaluate / predict
def test_evaluate(lenet_run, sandbox):
    r0, out = lenet_run
    assert r0.returncode == 0, r0.stderr
    train_acc = ACC_RE.match(r0.stdout.strip()).group(2)
    r = cli(sandbox, "evaluate", out / "checkpoint.npz", "--data-root", sandbox["data"], "--no-verify")
    assert r.returncode == 0, r.stderr
    m = re.fullmatch(rf"lenet5 on mnist test set: accuracy (\d+\.\d\d)% \({N_TEST} images\)", r.stdout.strip())
    assert m, r.stdout
    assert m.group(1) == train_acc
    # the data set can also come from $PYCONVNET_DATA
    r2 = cli(sandbox, "evaluate", out / "checkpoint.npz", "--no-verify", env={"PYCONVNET_DATA": str(sandbox["data"])})
    assert r2.returncode == 0 and r2.stdout == r.stdout


def test_permute_pixels_round_trip(sandbox):
    """--permute-pixels is stored in the checkpoint and re-applied by evaluate."""
    out = sandbox["base"] / "run-perm"
    r = cli(sandbox, "train", "mlp3", "--limit", 128, "--permute-pixels", 3, "--data-root", sandbox["data"],
            "--out", out, "--quiet", "--no-verify")
    assert r.returncode == 0, r.stderr
    acc = ACC_RE.match(r.stdout.strip()).group(2)
    r = cli(sandbox, "evaluate", out / "checkpoint.npz", "--data-root", sandbox["data"], "--no-verify")
    assert r.returncode == 0, r.stderr
    assert f"accuracy {acc}%" in r.stdout


def _expected_prediction(out, sandbox, index):
    from pyconvnet.checkpoint import load_checkpoint
    from pyconvnet.data import mnist
    from pyconvnet.training import predict

    ck = load_checkpoint(out / "checkpoint.npz")
    ds = mnist(root=sandbox["data"], download=False, verify=False)
    return int(np.argmax(predict(ck.model, ds.test_images[index:index + 1])[0]))


def test_predict(lenet_run, sandbox):
    _, out = lenet_run
    r = cli(sandbox, "predict", out / "checkpoint.npz", "--index", 3, "--data-root", sandbox["data"], "--no-verify")
    assert r.returncode == 0, r.stderr
    m = re.fullmatch(r"test image 3: predicted (\d) \((\d)\), true label (\d)", r.stdout.strip())
    assert m, r.stdout
    assert m.group(1) == m.group(2)  # MNIST class names are the digits
    assert int(m.group(3)) == int(sandbox["yte"][3])
    assert int(m.group(1)) == _expected_prediction(out, sandbox, 3)


def test_predict_json_and_quiet(lenet_run, sandbox):
    _, out = lenet_run
    r = cli(sandbox, "predict", out / "checkpoint.npz", "--index", 7, "--data-root", sandbox["data"], "--no-verify",
            "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d == {"index": 7, "predicted": _expected_prediction(out, sandbox, 7), "label": int(sandbox["yte"][7])}
    r = cli(sandbox, "predict", out / "checkpoint.npz", "--index", 7, "--data-root", sandbox["data"], "--no-verify",
            "--quiet")
    assert r.returncode == 0 and r.stdout.strip() == str(d["predicted"])


@pytest.mark.parametrize("index", [99999, N_TEST, -1])
def test_predict_index_out_of_range(lenet_run, sandbox, index):
    _, out = lenet_run
    r = cli(sandbox, "predict", out / "checkpoint.npz", "--index", index, "--data-root", sandbox["data"],
            "--no-verify")
    assert_one_line_error(r, 2, rf"--index: must be in 0\.\.{N_TEST - 1}, got {index}")
    assert r.stdout == ""


def test_evaluate_model_that_does_not_fit_the_data(lenet_run, sandbox, tmp_path):
    """A 28x28 grayscale model evaluated on CIFAR-10 images: one line, not a traceback."""
    from data_helpers import make_cifar_set

    make_cifar_set(tmp_path / "cifar", n=2)
    _, out = lenet_run
    r = cli(sandbox, "evaluate", out / "checkpoint.npz", "--dataset", "cifar10", "--data-root", tmp_path / "cifar",
            "--no-verify")
    assert_one_line_error(r, 2, "does not take the cifar10 test images")


# ------------------------------------------------------------------ errors
def test_unverified_data_is_rejected_without_no_verify(sandbox, tmp_path):
    """The shared helper's tiny set is not the canonical MNIST: without --no-verify the
    digest check refuses it, in one line that names the way out."""
    make_idx_set(tmp_path / "h", n_train=32, n_test=8, tag=4)
    assert set(p.name for p in (tmp_path / "h").iterdir()) == {n + ".gz" for n in IDX_NAMES}
    r = cli(sandbox, "train", "lenet5", "--data-root", tmp_path / "h", "--out", tmp_path / "x", "--quiet")
    assert_one_line_error(r, 2, r"train-images-idx3-ubyte\.gz: SHA-256.*--no-verify")
    assert not (tmp_path / "x").exists()
    r = cli(sandbox, "evaluate", "whatever.npz", "--data-root", tmp_path / "h")
    assert_one_line_error(r, 2, "checkpoint not found")  # the checkpoint is looked at first


@pytest.mark.parametrize("args, match", [
    (["train", "resnet"], r"unknown model 'resnet'; choose from: " + ", ".join(MODELS)),
    (["train", "lenet5", "--epochs", "0"], r"--epochs: must be >= 1"),
    (["train", "lenet5", "--epochs", "-3"], r"--epochs: must be >= 1"),
    (["train", "lenet5", "--epochs", "two"], r"argument --epochs: invalid int value: 'two'"),
    (["train", "lenet5", "--batch-size", "0"], r"--batch-size: must be >= 1"),
    (["train", "lenet5", "--limit", "-5"], r"--limit: must be >= 1"),
    (["train", "lenet5", "--lr", "-0.1"], r"--lr: must be a finite number > 0"),
    (["train", "lenet5", "--lr", "nan"], r"--lr: must be a finite number > 0"),
    (["train", "lenet5", "--weight-decay", "-1"], r"--weight-decay: must be a finite number >= 0"),
    (["train", "lenet5", "--dataset", "svhn"], r"--dataset: invalid choice: 'svhn'"),
    (["train", "lenet5", "--optimizer", "lbfgs"], r"--optimizer: invalid choice"),
    (["train"], r"required: model"),
    (["predict", "ck.npz"], r"required: --index"),
    (["frobnicate"], r"invalid choice: 'frobnicate'"),
    ([], r"required: COMMAND"),
    (["evaluate", "missing.npz"], r"checkpoint not found: missing.npz"),
    (["predict", "missing.npz", "--index", "1"], r"checkpoint not found: missing.npz"),
])
def test_usage_errors(sandbox, args, match):
    r = cli(sandbox, *args)
    assert_one_line_error(r, 2, match)
    assert r.stdout == ""


def test_corrupt_checkpoint(sandbox, lenet_run, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes((lenet_run[1] / "checkpoint.npz").read_bytes()[:1000])
    r = cli(sandbox, "evaluate", bad, "--data-root", sandbox["data"], "--no-verify")
    assert_one_line_error(r, 2, "not a readable .npz checkpoint")
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, w=np.zeros(3))
    r = cli(sandbox, "predict", foreign, "--index", 0, "--data-root", sandbox["data"], "--no-verify")
    assert_one_line_error(r, 2, "not a pyconvnet checkpoint")


def test_model_that_does_not_fit_the_data_set(sandbox):
    r = cli(sandbox, "train", "cifar_cnn", "--dataset", "mnist", "--data-root", sandbox["data"], "--no-verify",
            "--out", sandbox["base"] / "y", "--quiet")
    assert_one_line_error(r, 2, "cifar_cnn expects 32x32 images")


def test_divergence_is_one_line(sandbox):
    r = cli(sandbox, "train", "lenet5", "--lr", "1e10", "--limit", 32, "--batch-size", 32, "--data-root",
            sandbox["data"], "--no-verify", "--out", sandbox["base"] / "div", "--quiet")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    errs = [l for l in r.stderr.splitlines() if l.startswith(ERROR_PREFIX)]
    assert len(errs) == 1 and "diverged" in errs[0] and "learning rate" in errs[0]


def test_out_is_a_file(sandbox, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    r = cli(sandbox, "train", "mlp3", "--limit", 16, "--data-root", sandbox["data"], "--no-verify", "--out", f,
            "--quiet")
    assert_one_line_error(r, 1)


def test_missing_data_empty_root(sandbox, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli(sandbox, "train", "lenet5", "--data-root", empty, "--out", tmp_path / "o", "--quiet", no_system=True)
    msg = assert_data_not_found(r, sandbox)
    assert str(empty) in msg and "(cache)" in msg and str(sandbox["home"]) in msg
    assert not (tmp_path / "o").exists()


def test_missing_data_env_var_empty(sandbox, tmp_path):
    empty = tmp_path / "empty-env"
    empty.mkdir()
    r = cli(sandbox, "train", "mlp3", "--out", tmp_path / "o", "--quiet", no_system=True,
            env={"PYCONVNET_DATA": str(empty)})
    msg = assert_data_not_found(r, sandbox)
    assert f"{empty} ($PYCONVNET_DATA)" in msg


def test_missing_data_for_evaluate(sandbox, lenet_run, tmp_path):
    empty = tmp_path / "e"
    empty.mkdir()
    r = cli(sandbox, "evaluate", lenet_run[1] / "checkpoint.npz", "--data-root", empty, no_system=True)
    assert_data_not_found(r, sandbox)
    r = cli(sandbox, "predict", lenet_run[1] / "checkpoint.npz", "--index", 0, no_system=True,
            env={"PYCONVNET_DATA": str(empty)})
    assert_data_not_found(r, sandbox)


# ------------------------------------------------------------------ help / models
@pytest.mark.parametrize("sub", [[], ["train"], ["evaluate"], ["predict"], ["models"]])
def test_help(sandbox, sub):
    r = cli(sandbox, *sub, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: pyconvnet") and r.stderr == ""
    if sub == ["train"]:
        for opt in ("--epochs", "--limit", "--data-root", "--out", "--quiet", "--no-verify", "--augment"):
            assert opt in r.stdout


def test_models_lists_the_zoo(sandbox):
    r = cli(sandbox, "models")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert [l.split()[0] for l in lines] == list(MODELS)
    for line in lines:
        assert "[default: --dataset" in line
