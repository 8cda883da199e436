"""`pyconvnet experiment overfit` (the Kyoto Univ. exercise's B1-(1)): the two networks, the
curve statistics, argument errors, and --quick end to end on MNIST-format files written here and
on the real set when PYCONVNET_DATA holds it."""
from __future__ import annotations

import argparse
import json
import os

import numpy as np
import pytest
from data_helpers import make_mnist_like

from pyconvnet import layers as L
from pyconvnet import models
from pyconvnet.experiments import overfit as of
from pyconvnet.training import History


def _types(model):
    return [type(layer).__name__ for _, layer in model._children()]


def test_overfit_cnn_pair_differs_only_by_the_regularisers():
    large, reg = models.overfit_cnn(seed=0), models.overfit_cnn(regularised=True, seed=0)
    assert _types(large) == ["Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d", "Flatten", "Linear", "ReLU", "Linear"]
    assert [t for t in _types(reg) if t not in ("BatchNorm2d", "BatchNorm1d", "Dropout")] == _types(large)
    assert _types(reg).count("Dropout") == 2 and _types(reg).count("BatchNorm2d") == 2
    drops = [layer.p for _, layer in reg._children() if isinstance(layer, L.Dropout)]
    assert drops == [0.25, 0.5]
    x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=np.float32)
    assert large.forward(x).shape == reg.forward(x).shape == (2, 10)
    # the Keras CNN's convolutions and a 12544 -> 256 dense layer: 3.2M weights
    assert large.num_params() == 32 * 9 + 32 + 64 * 32 * 9 + 64 + 12544 * 256 + 256 + 256 * 10 + 10


def test_curve_stats_find_the_minimum_and_the_rise():
    h = History(epoch=[1, 2, 3, 4], train_loss=[1.0, 0.5, 0.2, 0.1], train_acc=[0.5, 0.8, 0.95, 1.0],
                val_loss=[0.9, 0.6, 0.7, 0.8], val_acc=[0.6, 0.85, 0.84, 0.83], seconds=[1, 1, 1, 1],
                train_seconds=[0.5] * 4)
    s = of.curve_stats(h)
    assert s["min_test_loss"] == 0.6 and s["min_test_loss_epoch"] == 2
    assert s["test_loss_rise"] == pytest.approx(0.2)
    assert s["best_test_acc"] == 0.85 and s["best_test_acc_epoch"] == 2
    assert s["final_gap_acc"] == pytest.approx(0.17) and s["train_seconds"] == 2.0


def _args(argv):
    return of.finish_args(of.add_arguments(argparse.ArgumentParser()).parse_args(argv))


@pytest.mark.parametrize("argv, flag", [(["--epochs", "0"], "--epochs"), (["--train-size", "0"], "--train-size"),
                                        (["--shift", "-1"], "--shift"), (["--weight-decay", "-1"], "--weight-decay"),
                                        (["--test-size", "0"], "--test-size"), (["--hidden", "0"], "--hidden")])
def test_bad_arguments_name_the_flag(argv, flag):
    with pytest.raises(ValueError, match=flag):
        _args(argv)


def _check(out, n_train, n_test, epochs):
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)
    assert res["train_images"] == n_train and res["test_images"] == n_test
    assert set(res["runs"]) == {"large", "regularised"}
    assert res["machine"]["threads"] == 1  # the run's --threads 1, not the setting restored after it
    for name, r in res["runs"].items():
        h = r["history"]
        assert h["epoch"] == list(range(1, epochs + 1))
        for k in ("train_loss", "val_loss", "train_acc", "val_acc"):  # B1's four curves
            assert len(h[k]) == epochs and np.isfinite(h[k]).all(), (name, k)
        assert all(0.0 <= a <= 1.0 for a in h["train_acc"] + h["val_acc"])
        assert r["final_test_loss"] == h["val_loss"][-1] and r["min_test_loss"] == min(h["val_loss"])
        assert "total parameters" in r["summary"]
    with open(os.path.join(out, "results.md")) as f:
        md = f.read()
    assert "| large |" in md and "| regularised |" in md
    return res


def test_quick_run_on_mnist_format_files(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    root = make_mnist_like(tmp_path / "data", n_train=96, n_test=64)
    out = tmp_path / "run"
    assert of.main(["--quick", "--data-root", str(root), "--no-verify", "--out", str(out), "--threads", "1",
                    "--quiet", "--epochs", "2", "--hidden", "16"]) == 0
    _check(out, 96, 64, 2)
    for png in ("curves_large.png", "curves_regularised.png", "test_loss.png"):
        assert (out / png).stat().st_size > 1000, png
    printed = capsys.readouterr().out
    assert "large:" in printed and "BatchNorm2d" in printed and "total parameters" in printed


def test_quick_run_on_real_mnist(tmp_path):
    root = os.environ.get("PYCONVNET_DATA")
    if not root or not os.path.isdir(os.path.join(root, "mnist")):
        pytest.skip("MNIST files not found (set PYCONVNET_DATA)")
    out = tmp_path / "run"
    assert of.main(["--quick", "--out", str(out), "--threads", "1", "--quiet"]) == 0
    res = _check(out, 300, 1000, 6)
    large = res["runs"]["large"]
    # sane: the large network fits its 300 images better than it does the test images, both above chance
    assert large["final_train_acc"] > large["final_test_acc"] > 0.2


def test_history_figure_names_the_test_curves_and_titles_the_run():
    pytest.importorskip("matplotlib")
    from pyconvnet.plots import _pyplot, history_figure

    h = History(epoch=[1, 2], train_loss=[1.0, 0.5], train_acc=[0.5, 0.8], val_loss=[0.9, 0.7], val_acc=[0.6, 0.7])
    fig = history_figure(h, title="large CNN", val_label="test")
    try:
        assert fig._suptitle.get_text() == "large CNN"
        for ax in fig.axes:  # B1's four curves: train and test, loss and accuracy
            assert [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "test"]
    finally:
        _pyplot().close(fig)
