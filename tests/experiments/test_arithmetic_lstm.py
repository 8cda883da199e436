"""`pyconvnet experiment arithmetic-lstm` (the CNN+LSTM paper's arithmetic-sequence task): the
pairing and label space, the filter dissimilarity S_i, bad options, and --quick end to end on
small synthetic MNIST-format files (always) and on the real MNIST (skipped without it)."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

from pyconvnet.data import write_idx
from pyconvnet.experiments import arithmetic_lstm as E


# ============================================================================ pieces
def test_pairs_are_the_split_beside_its_reversed_copy():
    images = np.arange(5 * 4, dtype=np.uint8).reshape(5, 1, 2, 2)
    labels = np.array([3, 0, 9, 9, 1])
    a_img, b_img, a, b, target = E.make_pairs(images, labels)
    np.testing.assert_array_equal(a_img, images)
    np.testing.assert_array_equal(b_img, images[::-1])
    np.testing.assert_array_equal(a, labels)
    np.testing.assert_array_equal(b, labels[::-1])
    # third term 2b - a, shifted into 0 .. 27
    np.testing.assert_array_equal(target, 2 * labels[::-1] - labels + 9)
    assert target.min() >= 0 and target.max() <= 27
    every = np.array([2 * q - p + E.OFFSET for p in range(10) for q in range(10)])
    assert (every.min(), every.max(), len(np.unique(every))) == (0, 27, 28)


def test_split_follows_the_paper_and_is_seeded():
    class DS:
        train_images = np.arange(100)[:, None]
        train_labels = np.arange(100) % 10
        test_images = np.arange(30)[:, None]
        test_labels = np.arange(30) % 10

    (xt, _), (xv, _), (xe, _) = E.split_mnist(DS, seed=1, sizes=(42, 18, 10))
    assert (len(xt), len(xv), len(xe)) == (42, 18, 10)
    assert not set(xt[:, 0]) & set(xv[:, 0])  # disjoint
    np.testing.assert_array_equal(xe[:, 0], np.arange(10))
    again = E.split_mnist(DS, seed=1, sizes=(42, 18, 10))
    np.testing.assert_array_equal(again[0][0], xt)
    with pytest.raises(ValueError, match="--limit"):
        E.split_mnist(DS, seed=1, sizes=(90, 18, 10))


def test_digit_encodings():
    v = E.encode_digits(np.array([0, 9]), np.array([3, 4]), "value")
    assert v.shape == (2, 2, 1) and v.dtype == np.float32
    np.testing.assert_array_equal(v[:, :, 0], [[0, 3], [9, 4]])
    o = E.encode_digits(np.array([0, 9]), np.array([3, 4]), "onehot")
    assert o.shape == (2, 2, 10)
    np.testing.assert_array_equal(o.argmax(axis=2), [[0, 3], [9, 4]])


def test_filter_dissimilarity_is_the_nearest_filter_distance():
    rng = np.random.default_rng(0)
    f, g = rng.standard_normal((16, 1, 3, 3)), rng.standard_normal((16, 1, 3, 3))
    s = E.filter_dissimilarity(f, g)
    brute = [min(np.linalg.norm(f[i] - g[j]) for j in range(16)) for i in range(16)]
    np.testing.assert_allclose(s, brute, rtol=1e-12)
    np.testing.assert_array_equal(E.filter_dissimilarity(f, f[rng.permutation(16)]), 0)  # same set, any order
    assert not np.allclose(s, E.filter_dissimilarity(g, f))  # not symmetric: the paper's (a) vs (b)


def test_bad_options(capsys):
    assert E.main(["--epochs", "0"]) == 2
    assert "pyconvnet: error: --epochs: expected a positive integer, got 0" in capsys.readouterr().err
    assert E.main(["--lr", "-1"]) == 2
    assert "--lr: expected a positive number" in capsys.readouterr().err
    assert E.main(["--limit", "1"]) == 2
    assert "--limit: expected at least 2" in capsys.readouterr().err


# ============================================================================ end to end
def _check_outputs(out, res, split):
    for name in ("results.json", "results.md", "filters_same_model.png", "filters_between_models.png",
                 "filters.png", "filters.npz"):
        assert os.path.getsize(out / name) > 0, name
    with open(out / "results.json") as f:
        saved = json.load(f)
    assert saved["split"] == list(split)
    assert set(saved["accuracy"]) == set(E.PAPER)
    assert all(0.0 <= v <= 1.0 for v in saved["accuracy"].values())
    assert saved["wall_seconds"] > 0 and saved["machine"]["cores"] >= 1
    # the S values in the results are those of the saved filters
    with np.load(out / "filters.npz", allow_pickle=False) as z:
        filters = {k: z[k] for k in z.files}
    assert all(w.shape == (16, 1, 3, 3) for w in filters.values())
    for fig, spec in (("fig4", E.FIG4), ("fig5", E.FIG5)):
        for letter, (rm, rc, cm, cc) in spec.items():
            want = E.filter_dissimilarity(filters[f"{rm}_{rc}"], filters[f"{cm}_{cc}"])
            np.testing.assert_allclose(saved["S"][fig][letter], want, rtol=1e-6)
    # training moved the filters away from their start
    assert not np.allclose(saved["S"]["fig4"]["a"], saved["S_untrained"])
    md = (out / "results.md").read_text()
    assert "| model-2 |" in md and "0.867" in md
    return saved


def test_quick_on_synthetic_mnist_files(tmp_path, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    for split, n in (("train", 120), ("t10k", 40)):
        write_idx(data / f"{split}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(data / f"{split}-labels-idx1-ubyte", rng.integers(0, 10, n).astype(np.uint8))
    out = tmp_path / "out"
    rc = E.main(["--quick", "--limit", "60", "--epochs", "1", "--lstm-epochs", "2", "--data-root", str(data),
                 "--no-verify", "--out", str(out), "--quiet", "--threads", "1"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "seq (Stack) <- p1, p2" in printed and "rnn (Sequential) <- seq" in printed  # the summaries
    assert "| model-1 LSTM |" in printed
    saved = _check_outputs(out, None, (60, 25, 14))
    assert saved["epochs"] == {"cnn": 1, "model-1 lstm": 2, "model-2": 1}


def _have_mnist():
    if not os.environ.get("PYCONVNET_DATA"):
        return False
    try:
        from pyconvnet.data import mnist

        mnist(download=False)
        return True
    except Exception:  # noqa: BLE001 - any failure to load means: skip
        return False


@pytest.mark.skipif(not _have_mnist(), reason="MNIST files not found (set PYCONVNET_DATA)")
def test_quick_on_mnist(tmp_path):
    out = tmp_path / "out"
    assert E.main(["--quick", "--out", str(out), "--quiet", "--threads", "1"]) == 0
    saved = _check_outputs(out, None, (3000, 1000, 1000))
    # two epochs of SGD on 3000 digits: the CNNs read digits far above chance (0.1)
    assert saved["accuracy"]["model-1 CNN1"] > 0.4 and saved["accuracy"]["model-1 CNN2"] > 0.4
