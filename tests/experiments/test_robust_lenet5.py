"""`pyconvnet experiment robust-lenet5` (the LeNet-5 translation report): the shifted evaluation
against a per-offset loop and a position-reading model, the corner-example choice, argument
errors, and --quick end to end on MNIST-format files written here and on the real set when
PYCONVNET_DATA holds it."""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest
from data_helpers import make_mnist_like

from pyconvnet import models
from pyconvnet.data import shift_grid, translate
from pyconvnet.experiments import robust_lenet5 as rl
from pyconvnet.training import predict
from pyconvnet.tta import shifted_predictions


class ColumnOfBrightestPixel:
    """A stand-in model whose 'class' is the column of each image's brightest pixel."""

    def forward(self, x, training=False):
        n, _, _, w = x.shape
        col = x.reshape(n, -1).argmax(axis=1) % w
        return np.eye(w, dtype=np.float32)[col]


def test_shifted_predictions_follow_the_offsets():
    x = np.zeros((3, 1, 8, 8), np.uint8)
    for i, c in enumerate((2, 4, 5)):
        x[i, 0, 3, c] = 255
    shifts = np.array([[0, 0], [1, 2], [-2, -1], [0, -2]])
    got = shifted_predictions(ColumnOfBrightestPixel(), x, shifts, batch_size=2)
    want = np.array([[2, 4, 5], [4, 6, 7], [1, 3, 4], [0, 2, 3]])
    np.testing.assert_array_equal(got, want)


def test_shifted_predictions_equal_predict_on_each_shifted_copy():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (7, 1, 28, 28), dtype=np.uint8)
    model = models.lenet5(seed=3)
    grid = shift_grid(2, 1, 2, 1)
    got = shifted_predictions(model, x, grid, batch_size=3)  # 3 does not divide 7: a short last batch
    assert got.shape == (len(grid), 7)
    for k, (dy, dx) in enumerate(grid):
        want = np.argmax(predict(model, translate(x, int(dy), int(dx)), batch_size=7), axis=1)
        np.testing.assert_array_equal(got[k], want)


@pytest.mark.parametrize("shifts, batch, match", [(np.zeros((3,), int), 4, "shifts"),
                                                  (np.zeros((2, 2), float), 4, "shifts"),
                                                  (np.zeros((2, 2), int), 0, "batch_size")])
def test_shifted_predictions_bad_arguments(shifts, batch, match):
    with pytest.raises(ValueError, match=match):
        shifted_predictions(ColumnOfBrightestPixel(), np.zeros((2, 1, 4, 4), np.uint8), shifts, batch_size=batch)


def test_corner_examples_prefer_the_reports_indices_and_fill_up():
    grid = shift_grid(2, 1, 2, 1)  # corners (+-2, +-1): rows 0, 2, 6, 8
    labels = np.array([0, 1, 2, 3, 4, 5])
    lenet = np.tile(labels, (len(grid), 1))
    robust = lenet.copy()
    lenet[8, 1] = 9      # image 1: LeNet-5 wrong at corner (2, 1), robust right -> qualifies
    lenet[2, 4] = 9      # image 4 too, at (-2, 1)
    lenet[0, 5] = 9      # image 5: both wrong -> does not qualify
    robust[0, 5] = 8
    lenet[4, 3] = 9      # image 3: wrong only at the centre, not a corner
    preds = {"lenet5/shifted": (None, lenet), "robust_lenet5/shifted": (None, robust)}
    ex = rl.corner_examples(grid, preds, labels, wanted=[1, 3, 99], count=2)
    assert [(e["index"], e["qualifies"], e["report_index"]) for e in ex] == [(1, True, True), (3, False, True),
                                                                             (4, True, False)]
    assert ex[0]["shift"] == [2, 1] and ex[0]["lenet5"] == 9 and ex[0]["robust_lenet5"] == 1
    assert ex[2]["shift"] == [-2, 1]


def _args(argv):
    return rl.finish_args(rl.add_arguments(argparse.ArgumentParser()).parse_args(argv))


@pytest.mark.parametrize("argv, flag", [(["--epochs", "0"], "--epochs"), (["--step-y", "0"], "--step-y"),
                                        (["--max-shift-y", "3"], "--max-shift-y"), (["--lr", "0"], "--lr"),
                                        (["--examples", "a,b"], "--examples"), (["--test-limit", "0"], "--test-limit"),
                                        (["--max-shift-x", "-1"], "--max-shift-x")])
def test_bad_arguments_name_the_flag(argv, flag):
    with pytest.raises(ValueError, match=flag):
        _args(argv)


def test_run_from_args_reports_bad_options(capsys):
    args = rl.add_arguments(argparse.ArgumentParser()).parse_args(["--step-x", "0"])
    assert rl.run_from_args(args) == 2
    assert capsys.readouterr().err.startswith("pyconvnet: error: --step-x")


def _check(out, n_test, grid_size):
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    assert set(res["runs"]) == {"lenet5/plain", "robust_lenet5/plain", "lenet5/shifted", "robust_lenet5/shifted"}
    assert len(res["grid"]) == grid_size and [0, 0] in res["grid"]
    for key, r in res["runs"].items():
        assert r["plain"]["correct"] + r["plain"]["wrong"] == n_test
        assert r["translated"]["correct"] + r["translated"]["wrong"] == n_test * grid_size
        assert 0.0 <= r["plain"]["error"] <= 1.0 and 0.0 <= r["translated"]["error"] <= 1.0
        assert len(r["error_by_shift"]) == grid_size
        # the translated error is the mean of the per-offset errors; the (0, 0) offset is the plain test
        assert np.mean(r["error_by_shift"]) == pytest.approx(r["translated"]["error"])
        assert r["error_by_shift"][res["grid"].index([0, 0])] == pytest.approx(r["plain"]["error"])
        assert np.isfinite(r["history"]["train_loss"]).all() and "total parameters" in r["summary"]
    assert res["wall_seconds"] > 0 and res["machine"]["cores"] >= 1
    assert res["machine"]["threads"] == 1  # the run's --threads 1, not the setting restored after it
    with open(os.path.join(out, "results.md")) as f:
        md = f.read()
    assert "| robust LeNet-5 | yes |" in md and "29.5%*" in md
    return res


def test_quick_run_on_mnist_format_files(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    root = make_mnist_like(tmp_path / "data", n_train=256, n_test=40)
    out = tmp_path / "run"
    assert rl.main(["--quick", "--data-root", str(root), "--no-verify", "--out", str(out), "--threads", "1",
                    "--quiet", "--examples", "3,7", "--epochs", "1"]) == 0
    res = _check(out, 40, 55)
    assert [e["index"] for e in res["corner_examples"]][:2] == [3, 7]
    for png in ("error_by_shift.png", "examples.png", "corner_digits.png"):
        assert (out / png).stat().st_size > 1000, png
    printed = capsys.readouterr().out
    assert "LeNet-5:" in printed and "robust LeNet-5:" in printed and "total parameters" in printed


def test_quick_run_on_real_mnist(tmp_path):
    root = os.environ.get("PYCONVNET_DATA")
    if not root or not os.path.isdir(os.path.join(root, "mnist")):
        pytest.skip("MNIST files not found (set PYCONVNET_DATA)")
    out = tmp_path / "run"
    assert rl.main(["--quick", "--out", str(out), "--threads", "1", "--quiet"]) == 0
    res = _check(out, 500, 55)
    lenet = res["runs"]["lenet5/plain"]
    # sane, not a given accuracy: better than chance after 3 short epochs, and worse on shifted digits
    assert lenet["plain"]["error"] < 0.8
    assert lenet["translated"]["error"] > lenet["plain"]["error"]
