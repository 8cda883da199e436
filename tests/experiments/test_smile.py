"""`pyconvnet experiment smile`: the synthetic stand-in (218x178 JPEG faces in the exercise's
folder layout), the streaming loader over it, --quick end to end, a run on a given folder, and
argument errors."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

pytest.importorskip("PIL")

from pyconvnet.data import ImageFolder  # noqa: E402
from pyconvnet.experiments import smile  # noqa: E402


def test_stand_in_has_the_exercises_layout_and_image_size(tmp_path):
    from PIL import Image

    counts = smile.write_stand_in(tmp_path, 20, seed=3)
    assert counts == {"train": 16, "test": 4}
    for split, n in counts.items():
        for c in ("smile", "nonsmile"):
            files = sorted(os.listdir(tmp_path / split / c))
            assert len(files) == n // 2 and all(f.endswith(".jpg") for f in files)
            with Image.open(tmp_path / split / c / files[0]) as im:
                assert im.format == "JPEG" and im.size == (178, 218) and im.mode == "RGB"
    assert "SYNTHETIC STAND-IN" in (tmp_path / "README.txt").read_text()
    # drawn with varied colour and position: no two images alike
    a = smile.draw_face(np.random.default_rng(0), True)
    b = smile.draw_face(np.random.default_rng(1), True)
    assert a.shape == (218, 178, 3) and np.abs(a.astype(int) - b).mean() > 10


def test_the_loader_streams_batches_from_disk(tmp_path, monkeypatch):
    smile.write_stand_in(tmp_path, 20, seed=0)
    folder = ImageFolder(tmp_path / "train", size=(218, 178), batch_size=5, shuffle=True, seed=0)
    assert folder.classes == ["nonsmile", "smile"] and len(folder) == 4
    reads = []
    real = folder.load_image
    monkeypatch.setattr(folder, "load_image", lambda p: reads.append(p) or real(p))
    it = iter(folder)
    x, y = next(it)
    assert len(reads) == 5                       # one batch decoded, not the folder
    assert x.shape == (5, 3, 218, 178) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert set(y.tolist()) <= {0, 1}
    rate, n = smile.loader_rate(folder, 2)
    assert n == 10 and rate > 0


def test_quick_run(tmp_path, capsys):
    out = tmp_path / "out"
    assert smile.main(["--quick", "--threads", "1", "--quiet", "--out", str(out)]) == 0
    with open(out / "results.json") as f:
        res = json.load(f)
    h = res["history"]
    assert h["epoch"] == [1, 2, 3] and all(np.isfinite(h["train_loss"])) and all(np.isfinite(h["val_loss"]))
    assert all(0.0 <= a <= 1.0 for a in h["train_acc"] + h["val_acc"])
    assert res["data"]["synthetic"]["images"] == 320 and res["data"]["counts"]["train"] == [128, 128]
    assert 0.0 <= res["test"]["accuracy"] <= 1.0 and res["loader_images_per_s"] > 0
    assert res["training_images_per_s"] > 0
    for name in ("history.png", "samples.png", "results.md"):
        assert os.path.getsize(out / name) > 0
    md = (out / "results.md").read_text()
    assert "SYNTHETIC STAND-IN" in md and "steps_per_epoch" in md and "Command: `pyconvnet" in md
    assert "GlobalAvgPool2d" in res["summary"]
    # the same folder again, given with --data (no --synthetic): the path for real face folders
    out2 = tmp_path / "out2"
    rc = smile.main(["--data", str(out / "synthetic_faces"), "--size", "64", "64", "--epochs", "1",
                     "--steps-per-epoch", "2", "--validation-steps", "1", "--evaluate-steps", "1", "--quiet",
                     "--out", str(out2)])
    assert rc == 0
    with open(out2 / "results.json") as f:
        assert json.load(f)["data"]["size"] == [64, 64]


def test_missing_or_wrong_folders(tmp_path, capsys):
    assert smile.main(["--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pyconvnet: error: --data:") and "train" in err
    assert smile.main(["--out", str(tmp_path / "o")]) == 2
    assert "--synthetic N" in capsys.readouterr().err
    assert smile.main(["--synthetic", "5", "--out", str(tmp_path / "o")]) == 2
    assert "--synthetic: expected at least 20" in capsys.readouterr().err
    for split in ("train", "test"):
        os.makedirs(tmp_path / "bad" / split / "cats")
        with open(tmp_path / "bad" / split / "cats" / "a.jpg", "wb") as f:
            f.write(b"not a jpeg")
    with pytest.raises(ValueError, match="class folders \\['cats'\\], expected \\['nonsmile', 'smile'\\]"):
        smile.main(["--data", str(tmp_path / "bad"), "--quiet", "--out", str(tmp_path / "o")])


def test_mosaic(tmp_path):
    smile.write_stand_in(tmp_path, 20, seed=0)
    f = ImageFolder(tmp_path / "train", size=8)
    m = smile.mosaic(f.samples[:3], cols=2, scale=0.5)
    assert m.dtype == np.uint8 and m.shape == (2 * (109 + 6 + 2) + 2, 2 * (89 + 2) + 2, 3)


def test_stand_in_replaces_an_earlier_one_but_never_other_folders(tmp_path):
    smile.write_stand_in(tmp_path / "a", 40, seed=0)
    smile.write_stand_in(tmp_path / "a", 20, seed=0)
    assert len(os.listdir(tmp_path / "a" / "train" / "smile")) == 8
    os.makedirs(tmp_path / "faces" / "train" / "smile")
    (tmp_path / "faces" / "train" / "smile" / "me.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="already holds train/ or test/ that no stand-in wrote"):
        smile.write_stand_in(tmp_path / "faces", 20)
    assert (tmp_path / "faces" / "train" / "smile" / "me.jpg").exists()
