"""Smoke tests of the ``pyconvnet`` command line, each in a subprocess, on a tiny
generated MNIST-format data set (IDX .gz files written into tmp_path).

The subprocesses never see the machine's data: HOME points into tmp_path (so the
cache is empty), PYCONVNET_DATA and XDG_CACHE_HOME are unset or point at empty
folders, and the HTTP(S) proxy is a closed local port so a download attempt fails
at once. The generated files are not the canonical MNIST, so the runs that use
them pass --no-verify (without it the SHA-256 check rejects them: tested too)."""
from __future__ import annotations

import argparse
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
from pyconvnet import models
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


ACC_RE = re.compile(r"^(?P<model>\w+) on mnist after (?P<epochs>\d+) epoch\(s\): "
                    r"(validation accuracy (?P<val>\d+\.\d\d)% \(best [\d.]+%, (?P<nval>\d+) images held out of "
                    r"the training set\)|no validation \(--val-split 0\)); "
                    r"test accuracy (?P<test>\d+\.\d\d)% \((?P<ntest>\d+) images\); "
                    r"[\d.]+ s/epoch, \d+ samples/s training; checkpoint in (?P<ck>.+checkpoint\.npz)$")


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
    assert m and m.group("model") == "lenet5", lines[0]
    assert Path(m.group("ck")) == out / "checkpoint.npz"
    # the default --val-split 0.1 holds out the last 10% of the 256 training images; the test set is separate
    assert m.group("nval") == "26" and m.group("ntest") == str(N_TEST)
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
    assert f"{ck.meta['test_acc'] * 100:.2f}" == m.group("test")
    assert f"{ck.meta['history']['val_acc'][-1] * 100:.2f}" == m.group("val")
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
    assert m and m.group("model") == model, r.stdout
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
    train_acc = ACC_RE.match(r0.stdout.strip()).group("test")
    r = cli(sandbox, "evaluate", out / "checkpoint.npz", "--data-root", sandbox["data"], "--no-verify")
    assert r.returncode == 0, r.stderr
    m = re.fullmatch(rf"lenet5 on mnist test set: accuracy (\d+\.\d\d)%, loss (\d+\.\d+) \({N_TEST} images\)",
                     r.stdout.strip())
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
    acc = ACC_RE.match(r.stdout.strip()).group("test")
    r = cli(sandbox, "evaluate", out / "checkpoint.npz", "--data-root", sandbox["data"], "--no-verify")
    assert r.returncode == 0, r.stderr
    assert f"accuracy {acc}%" in r.stdout


def _expected_logits(out, images):
    from pyconvnet.checkpoint import load_checkpoint
    from pyconvnet.training import predict

    return predict(load_checkpoint(out / "checkpoint.npz").model, images)


def _probabilities(logits):
    z = np.exp(logits.astype(np.float64) - logits.max())
    return z / z.sum()


def _expected_prediction(out, sandbox, index):
    from pyconvnet.data import mnist

    ds = mnist(root=sandbox["data"], download=False, verify=False)
    return int(np.argmax(_expected_logits(out, ds.test_images[index:index + 1])[0]))


def test_predict(lenet_run, sandbox):
    _, out = lenet_run
    r = cli(sandbox, "predict", out / "checkpoint.npz", "--index", 3, "--data-root", sandbox["data"], "--no-verify")
    assert r.returncode == 0, r.stderr
    m = re.fullmatch(r"test image 3: predicted (\d) \((\d)\) with probability (0\.\d{3}|1\.000), true label (\d) "
                     r"\((\d)\); top 3: (\d) [\d.]+, \d [\d.]+, \d [\d.]+", r.stdout.strip())
    assert m, r.stdout
    assert m.group(1) == m.group(2) == m.group(6)  # MNIST class names are the digits; the top class first
    assert int(m.group(4)) == int(sandbox["yte"][3])
    assert int(m.group(1)) == _expected_prediction(out, sandbox, 3)


def test_predict_json_and_quiet(lenet_run, sandbox):
    from pyconvnet.data import mnist

    _, out = lenet_run
    r = cli(sandbox, "predict", out / "checkpoint.npz", "--index", 7, "--data-root", sandbox["data"], "--no-verify",
            "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    ds = mnist(root=sandbox["data"], download=False, verify=False)
    p = _probabilities(_expected_logits(out, ds.test_images[7:8])[0])
    pred = _expected_prediction(out, sandbox, 7)
    assert d.pop("probabilities") == pytest.approx({str(k): p[k] for k in range(10)}, rel=1e-6)
    assert d == {"index": 7, "predicted": pred, "class": str(pred), "probability": pytest.approx(p[pred], rel=1e-6),
                 "label": int(sandbox["yte"][7])}
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
    (["train", "--resume", "missing.npz"], r"checkpoint not found: missing.npz"),
    (["predict", "ck.npz"], r"one of the arguments --image --index is required"),
    (["predict", "ck.npz", "--index", "1", "--image", "a.png"], r"not allowed with argument"),
    (["train", "lenet5", "--val-split", "1"], r"--val-split: must be a fraction in \[0, 1\), got 1"),
    (["train", "lenet5", "--val-split", "-0.1"], r"--val-split: must be a fraction in \[0, 1\)"),
    (["train", "lenet5", "--patience", "2", "--val-split", "0"], r"--patience: .*needs --val-split > 0"),
    (["train", "--epochs", "2"], r"required: model \(or --resume CHECKPOINT\)"),
    (["train", "lenet5", "--seed", "-1"], r"--seed: must be >= 0, got -1"),
    (["models", "resnet"], r"unknown model 'resnet'; choose from: " + ", ".join(MODELS)),
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
    line = assert_one_line_error(r, 2, r"--out: .*file is a file; expected a folder \(it is created if missing\)")
    assert "Errno" not in line
    # a folder below a file cannot be created: said in --out's words too, not as a bare [Errno 20]
    r = cli(sandbox, "train", "mlp3", "--limit", 16, "--data-root", sandbox["data"], "--no-verify", "--out",
            f / "sub", "--quiet")
    line = assert_one_line_error(r, 2, r"--out: cannot create the folder .*sub: Not a directory")
    assert "Errno" not in line


def test_missing_data_empty_root(sandbox, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli(sandbox, "train", "lenet5", "--data-root", empty, "--out", tmp_path / "o", "--quiet", no_system=True)
    msg = assert_data_not_found(r, sandbox)
    assert str(empty) in msg and "(cache)" in msg and str(sandbox["home"]) in msg
    assert not (tmp_path / "o").exists()
    # in the command line's words: its flag and the variable, not the Python API's root= / download=True
    assert f"{empty} (--data-root)" in msg
    assert "pass --data-root DIR or set the environment variable PYCONVNET_DATA=DIR" in msg
    assert "root=" not in msg and "download=True" not in msg and "download=False" not in msg


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


def test_version(sandbox):
    r = cli(sandbox, "--version")
    assert r.returncode == 0 and r.stdout.strip() == f"pyconvnet {pyconvnet.__version__}", (r.stdout, r.stderr)


def test_every_option_has_help():
    """Every option and positional of every command (experiments too) says what it does."""
    from pyconvnet.cli import make_parser

    def walk(parser, where):
        for a in parser._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    yield from walk(sub, f"{where} {name}")
            elif not isinstance(a, argparse._HelpAction):
                yield f"{where} {'/'.join(a.option_strings) or a.dest}", a.help

    missing = [name for name, text in walk(make_parser(), "pyconvnet") if not text]
    assert missing == []


def test_help_explains_seed_weight_decay_augment(sandbox):
    r = cli(sandbox, "train", "--help")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "the same seed gives the same run" in text
    assert "L2 penalty added to the gradients" in text
    assert "translate shifts by up to 3 pixels" in text
    assert "held out for validation" in text


def test_models_cite_sources_not_seed_folders(sandbox):
    r = cli(sandbox, "models")
    assert r.returncode == 0, r.stderr
    assert not re.search(r"seed \d", r.stdout), r.stdout
    assert "Kyoto Univ. exercise §6.3" in r.stdout and "LeNet-5 translation report" in r.stdout


def test_models_name_prints_the_summary(sandbox):
    r = cli(sandbox, "models", "lenet5")
    assert r.returncode == 0, r.stderr
    n = models.build("lenet5", (1, 28, 28)).num_params()
    assert f"total parameters: {n:,} (trainable)" in r.stdout
    assert "layers.0 (Conv2d)" in r.stdout and "(N, 6, 28, 28)" in r.stdout and "(N, 10)" in r.stdout
    r = cli(sandbox, "models", "cifar_cnn", "--dataset", "mnist")
    assert_one_line_error(r, 2, "cifar_cnn expects 32x32 images")


def test_json_results_val_split_and_one_test_pass(sandbox, lenet_run):
    """train --json: one JSON object on stdout (results.json holds the same); the
    validation figures are those of the held-out part of the training set, the test
    figures those of the test set, computed once (evaluate agrees)."""
    out = sandbox["base"] / "run-json"
    r = cli(sandbox, "train", "lenet5", "--limit", 200, "--val-split", 0.25, "--data-root", sandbox["data"],
            "--out", out, "--quiet", "--no-verify", "--json", "--summary")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res == json.loads((out / "results.json").read_text())
    assert (res["train_images"], res["val_images"], res["test_images"]) == (150, 50, N_TEST)
    assert "total parameters" in r.stderr  # --summary goes to stderr when stdout is JSON
    hist = json.loads((out / "history.json").read_text())
    assert res["val_acc"] == hist["val_acc"][-1] and res["val_loss"] == hist["val_loss"][-1]
    from pyconvnet.checkpoint import load_checkpoint

    best = load_checkpoint(out / "best.npz")
    assert best.meta["monitor"] == "val_acc" and best.meta["best"] == res["best_val_acc"]
    assert res["train_samples_per_second"] > 0 and res["seconds_per_epoch"] > 0
    e = cli(sandbox, "evaluate", out / "checkpoint.npz", "--data-root", sandbox["data"], "--no-verify", "--json")
    assert e.returncode == 0, e.stderr
    ev = json.loads(e.stdout)
    assert ev["accuracy"] == res["test_acc"] and ev["images"] == N_TEST and ev["split"] == "test"
    assert ev["loss"] == pytest.approx(res["test_loss"], rel=1e-5)


def test_test_set_is_evaluated_once(sandbox, monkeypatch, capsys):
    """In process, counting the model passes over the test images after fit: one."""
    import pyconvnet.training as T
    from pyconvnet.cli import main

    seen = []
    real_predict, real_evaluate = T.predict, T.evaluate
    monkeypatch.setattr(T, "predict", lambda m, x, *a, **k: seen.append(("predict", len(x))) or
                        real_predict(m, x, *a, **k))
    monkeypatch.setattr(T, "evaluate", lambda m, d, *a, **k: seen.append(("evaluate", len(d[0]))) or
                        real_evaluate(m, d, *a, **k))
    out = sandbox["base"] / "run-count"
    assert main(["train", "mlp3", "--limit", "100", "--epochs", "2", "--data-root", str(sandbox["data"]), "--out",
                 str(out), "--quiet", "--no-verify"]) == 0
    capsys.readouterr()
    assert [n for _, n in seen].count(N_TEST) == 1, seen  # the test set: once, at the end
    assert [n for _, n in seen].count(10) == 2, seen  # the validation split: after each of the 2 epochs


def test_val_split_0_has_no_validation_and_no_best(sandbox):
    out = sandbox["base"] / "run-noval"
    r = cli(sandbox, "train", "mlp3", "--limit", 64, "--val-split", 0, "--data-root", sandbox["data"], "--out", out,
            "--no-verify", "--threads", 1)
    assert r.returncode == 0, r.stderr
    m = ACC_RE.match(r.stdout.strip())
    assert m and m.group("val") is None and "no validation (--val-split 0)" in r.stdout
    assert "val_acc" not in r.stderr  # the progress lines show no validation figures
    assert not (out / "best.npz").exists() and (out / "checkpoint.npz").exists()


def test_patience_stops_early(sandbox):
    """lr 1e-30 leaves the float32 weights exactly as they are, so the validation loss
    never improves: with --patience 1 the run stops after epoch 2 of 5."""
    out = sandbox["base"] / "run-patience"
    r = cli(sandbox, "train", "mlp3", "--limit", 64, "--epochs", 5, "--lr", 1e-30, "--patience", 1, "--data-root",
            sandbox["data"], "--out", out, "--no-verify", "--threads", 1)
    assert r.returncode == 0, r.stderr
    assert "early stopping: val_loss did not improve for 1 epochs" in r.stderr
    assert json.loads((out / "history.json").read_text())["epoch"] == [1, 2]


def test_out_is_never_overwritten_silently(sandbox, lenet_run):
    _, out = lenet_run
    before = (out / "checkpoint.npz").read_bytes()
    args = ["train", "mlp3", "--limit", 32, "--data-root", sandbox["data"], "--no-verify", "--quiet"]
    r = cli(sandbox, *args, "--out", out)
    assert_one_line_error(r, 2, r"--out: .*run-lenet5 already holds a run \(checkpoint\.npz.*pass --overwrite")
    assert (out / "checkpoint.npz").read_bytes() == before
    # without --out: runs/MODEL (the cwd is the sandbox), then runs/MODEL-2
    r = cli(sandbox, *args)
    assert r.returncode == 0, r.stderr
    assert Path(ACC_RE.match(r.stdout.strip()).group("ck")) == Path("runs/mlp3/checkpoint.npz")
    from pyconvnet.cli import _out_folder, make_parser

    cwd = os.getcwd()
    try:
        os.chdir(sandbox["base"])
        assert _out_folder(make_parser().parse_args(["train", "mlp3"]), "mlp3") == os.path.join("runs", "mlp3-2")
    finally:
        os.chdir(cwd)
    r = cli(sandbox, *args, "--out", "runs/mlp3", "--overwrite")
    assert r.returncode == 0, r.stderr


def test_resume_equals_an_uninterrupted_run(sandbox, lenet_run):
    """--resume continues epoch 1's checkpoint to --epochs 2 (Keras: the final epoch),
    with the model, optimizer state, history and settings of the checkpoint: the weights
    equal those of a straight 2-epoch run, bit for bit."""
    import shutil

    _, first = lenet_run
    out = sandbox["base"] / "run-resumed"
    shutil.copytree(first, out)
    r = cli(sandbox, "train", "--resume", out / "checkpoint.npz", "--epochs", 2, "--data-root", sandbox["data"],
            "--no-verify", "--quiet")
    assert r.returncode == 0, r.stderr
    m = ACC_RE.match(r.stdout.strip())
    assert m and m.group("epochs") == "2" and Path(m.group("ck")) == out / "checkpoint.npz"
    straight = sandbox["base"] / "run-straight"
    r = cli(sandbox, "train", "lenet5", "--epochs", 2, "--limit", 256, "--data-root", sandbox["data"], "--out",
            straight, "--quiet", "--no-verify")
    assert r.returncode == 0, r.stderr
    with np.load(out / "checkpoint.npz") as a, np.load(straight / "checkpoint.npz") as b:
        keys = [k for k in a.files if k.startswith(("model/", "optim/"))]
        assert keys
        for k in keys:
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    ha, hb = (json.loads((d / "history.json").read_text()) for d in (out, straight))
    assert ha["epoch"] == hb["epoch"] == [1, 2] and ha["val_loss"] == hb["val_loss"]
    # what cannot be resumed says so, in the flags' words
    ck = out / "checkpoint.npz"
    for extra, match in ((["--epochs", 2], r"--epochs: the checkpoint is at epoch 2.*--epochs 3 or more"),
                         (["--lr", 0.5], r"--lr: the run being resumed used 0\.05, got 0\.5"),
                         (["mlp3"], r"--resume: the checkpoint is a lenet5 run, not mlp3")):
        r = cli(sandbox, "train", *extra, "--resume", ck, "--data-root", sandbox["data"], "--no-verify")
        assert_one_line_error(r, 2, match)


def _png(path, img):
    from PIL import Image

    Image.fromarray(img).save(path)
    return path


def test_predict_image_files(sandbox, lenet_run, tmp_path):
    """--image: grayscale and colour files of any size, converted to the model's 1x28x28 and
    scaled as in training: a test image saved as a PNG is classified as the test image."""
    pytest.importorskip("PIL")
    from pyconvnet.data import mnist

    _, out = lenet_run
    ds = mnist(root=sandbox["data"], download=False, verify=False)
    digit = ds.test_images[5, 0]
    same = _png(tmp_path / "five.png", digit)
    inverted = _png(tmp_path / "inverted.png", 255 - digit)
    big_rgb = _png(tmp_path / "big.png", np.repeat(np.kron(digit, np.ones((2, 2), np.uint8))[..., None], 3, axis=2))
    r = cli(sandbox, "predict", out / "checkpoint.npz", "--image", same, inverted, big_rgb, "--invert", "--json")
    assert r.returncode == 0, r.stderr
    # --invert applies to every file: 'inverted' is then the digit itself
    got = {Path(d["image"]).name: d for d in json.loads(r.stdout)}
    want = _probabilities(_expected_logits(out, ds.test_images[5:6])[0])
    inv = got["inverted.png"]
    assert inv["probabilities"] == pytest.approx({str(k): want[k] for k in range(10)}, rel=1e-5)
    assert inv["predicted"] == int(np.argmax(want)) and inv["class"] == str(inv["predicted"])
    for d in got.values():
        assert sum(d["probabilities"].values()) == pytest.approx(1.0)
    r = cli(sandbox, "predict", out / "checkpoint.npz", "--image", same)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(rf"{re.escape(str(same))}: predicted {inv['predicted']} \({inv['predicted']}\) with "
                        r"probability [01]\.\d{3}; top 3: .*", r.stdout.strip()), r.stdout
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    r = cli(sandbox, "predict", out / "checkpoint.npz", "--image", text)
    assert_one_line_error(r, 2, r"--image: .*notes\.png is not an image Pillow can read")
    r = cli(sandbox, "predict", out / "checkpoint.npz", "--image", tmp_path / "nope.png")
    assert_one_line_error(r, 2, r"--image: file not found: .*nope\.png")


def test_text_file_as_checkpoint_never_advises_unpickling(sandbox, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("these are my notes, not a checkpoint\n")
    for args in (["evaluate", notes], ["predict", notes, "--index", 0], ["train", "--resume", notes]):
        line = assert_one_line_error(cli(sandbox, *args), 2, r"notes\.txt: not a \.npz checkpoint")
        assert "pickle" not in line


def test_bad_omp_num_threads_is_reported(sandbox):
    r = cli(sandbox, "models", env={"OMP_NUM_THREADS": "abc"})
    assert r.returncode == 0, r.stderr
    assert "OMP_NUM_THREADS='abc' is not a positive integer" in r.stderr and "--threads N" in r.stderr
    r = cli(sandbox, "models", env={"OMP_NUM_THREADS": "2"})
    assert "OMP_NUM_THREADS" not in r.stderr


def test_experiment_threads_default_as_train():
    from pyconvnet.cli import make_parser

    p = make_parser()
    assert p.parse_args(["train", "lenet5"]).threads is None
    assert p.parse_args(["experiment", "relaxed-mnist"]).threads is None  # all cores, like train
