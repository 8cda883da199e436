"""The CIFAR-10 speedrun experiment (airbench94's recipe): its schedules against airbench's
formulas, its FLOP count against the model's own layers, argument errors, and --quick end
to end (on small CIFAR-format files written here; on the real data set when
PYCONVNET_DATA holds it)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from pyconvnet import layers as L
from pyconvnet import models
from pyconvnet.experiments import cifar10_speedrun as sr


def test_lr_multiplier_is_airbenchs_piecewise_linear_schedule():
    total = 476
    steps = np.arange(total + 1)
    want = np.interp(steps, [0, int(0.23 * total), total], [0.2, 1.0, 0.07])
    got = np.array([sr.lr_multiplier(s, total) for s in steps])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_lookahead_decay():
    assert sr.lookahead_decay(0, 100) == 0.0
    assert sr.lookahead_decay(100, 100) == pytest.approx(0.95 ** 5)
    assert sr.lookahead_decay(50, 100) == pytest.approx(0.95 ** 5 / 8)


def test_train_flops_counts_the_models_convolutions_and_head():
    """3 x the forward multiply-adds x 2, counted here from each Conv2d / Linear's output."""
    widths = (8, 16, 12)
    model = models.airbench_net(widths, seed=0)
    fwd = 0

    def walk(layer, x):
        nonlocal fwd
        children = list(layer._children())
        if not children:
            y = layer.forward(x, training=False)
            if isinstance(layer, L.Conv2d):
                w = layer.params["weight"]
                fwd += 2 * y.size * w[0].size
            elif isinstance(layer, L.Linear):
                fwd += 2 * y.size * layer.params["weight"].shape[1]
            return y
        for _, child in children:
            x = walk(child, x)
        return x

    out = walk(model, np.zeros((1, 3, 32, 32), np.float32))
    assert out.shape == (1, 10)
    np.testing.assert_allclose(out, model.forward(np.zeros((1, 3, 32, 32), np.float32)), rtol=1e-6, atol=1e-6)
    assert sr.train_flops(widths) == 3 * fwd


def _args(argv):
    import argparse

    return sr.finish_args(sr.add_arguments(argparse.ArgumentParser()).parse_args(argv))


@pytest.mark.parametrize("argv, flag", [(["--widths", "64,256"], "--widths"), (["--widths", "a,b,c"], "--widths"),
                                        (["--seeds", "x"], "--seeds"), (["--seeds", "-1"], "--seeds"),
                                        (["--epochs", "0"], "--epochs"), (["--epochs", "2,x"], "--epochs"),
                                        (["--epochs", "nan"], "--epochs"), (["--batch-size", "0"], "--batch-size")])
def test_bad_arguments_name_the_flag(argv, flag):
    with pytest.raises(ValueError, match=flag):
        _args(argv)


def _fake_cifar(root, n=200, seed=0):
    rng = np.random.default_rng(seed)
    d = root / "cifar-10-batches-bin"
    d.mkdir(parents=True)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        rec = rng.integers(0, 256, (n, 1 + 3 * 32 * 32), dtype=np.uint8)
        rec[:, 0] = rng.integers(0, 10, n)
        (d / name).write_bytes(rec.tobytes())
    return root


def _check_result(out, steps):
    with open(os.path.join(out, "results.json")) as f:
        res = json.load(f)["runs"][0]
    assert res["steps"] == steps and res["history"][-1]["steps"] == steps
    assert 0.0 <= res["test_acc_tta"] <= 1.0 and 0.0 <= res["test_acc"] <= 1.0
    assert np.isfinite(res["history"][-1]["train_loss"]) and res["history"][-1]["train_loss"] > 0
    for key in ("Conv2d forward", "Conv2d backward", "BatchNorm2d forward", "optimizer", "data"):
        assert res["breakdown_s"][key] > 0, key
    assert res["train_flops"] == sr.train_flops(tuple(res["widths"])) * res["batch_size"] * steps
    with open(os.path.join(out, "results.md")) as f:
        assert "| seed |" in f.read()
    return res


def test_quick_run_on_cifar_format_files(tmp_path, capsys):
    root = _fake_cifar(tmp_path / "data")
    out = tmp_path / "run"
    assert sr.main(["--quick", "--widths", "8,16,16", "--data-root", str(root), "--no-verify", "--out", str(out),
                    "--threads", "1", "--quiet"]) == 0
    res = _check_result(out, 3)
    assert res["n_train"] == 600 and res["n_test"] == 120
    assert "| 0 | " in capsys.readouterr().out


def test_an_epochs_list_runs_each_and_draws_the_curve(tmp_path):
    pytest.importorskip("matplotlib")
    root = _fake_cifar(tmp_path / "data", n=120)
    out = tmp_path / "run"
    assert sr.main(["--epochs", "1,2", "--limit", "256", "--batch-size", "128", "--widths", "4,8,8", "--data-root",
                    str(root), "--no-verify", "--out", str(out), "--threads", "1", "--quiet"]) == 0
    with open(out / "results.json") as f:
        runs = json.load(f)["runs"]
    assert [(r["epochs"], r["steps"]) for r in runs] == [(1.0, 2), (2.0, 4)]
    assert (out / "curve.png").stat().st_size > 1000


def test_curve_points_average_the_seeds_of_each_setting():
    def run(widths, epochs, acc, secs):
        return {"widths": list(widths), "epochs": epochs, "test_acc_tta": acc, "train_s": secs}

    runs = [run((64, 256, 256), 9.9, 0.94, 800.0), run((64, 256, 256), 5.0, 0.92, 400.0),
            run((64, 256, 256), 9.9, 0.93, 820.0), run((128, 384, 384), 9.9, 0.95, 2000.0)]
    pts = sr.curve_points(runs)
    assert [(p["widths"], p["epochs"], p["runs"]) for p in pts] == [
        ((64, 256, 256), 5.0, 1), ((64, 256, 256), 9.9, 2), ((128, 384, 384), 9.9, 1)]
    mid = pts[1]
    assert mid["acc"] == pytest.approx(93.5) and (mid["acc_min"], mid["acc_max"]) == pytest.approx((93.0, 94.0))
    assert mid["train_s"] == pytest.approx(810.0)


def test_quick_run_on_real_cifar10(tmp_path):
    root = os.environ.get("PYCONVNET_DATA")
    if not root or not os.path.isdir(os.path.join(root, "cifar-10-batches-bin")):
        pytest.skip("CIFAR-10 files not found (set PYCONVNET_DATA)")
    out = tmp_path / "run"
    assert sr.main(["--quick", "--out", str(out), "--threads", "1", "--quiet"]) == 0
    _check_result(out, 3)
