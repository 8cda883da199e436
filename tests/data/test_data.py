"""Tests for pyconvnet.data: IDX / CIFAR parsing, file resolution, downloads
(with a monkeypatched fetch), ImageFolder and the augmentations.  Everything
runs on tiny files generated in tmp_path, except the one ``slow`` test that
loads real MNIST when ``$PYCONVNET_DATA`` points at it."""
from __future__ import annotations

import gzip
import io
import os
import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import pyconvnet.data as D
from pyconvnet.data import _resolve
from data_helpers import (CIFAR_NAMES, IDX_NAMES, digests_of, files_under, make_cifar_set, make_idx_set,
                          sha256_of_file)

REAL_DATA = os.environ.get("PYCONVNET_DATA")  # captured before the isolation fixture clears it


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No real HOME, cache, env var, system folders or network for any test."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.delenv("PYCONVNET_DATA", raising=False)
    monkeypatch.setattr(_resolve, "SYSTEM_ROOTS", (tmp_path / "system",))

    def no_network(url, dest):
        raise OSError(f"network disabled in tests ({url})")

    monkeypatch.setattr(_resolve, "_fetch", no_network)
    return tmp_path


def default_cache(tmp_path):
    return tmp_path / "home" / ".cache" / "pyconvnet"


# --------------------------------------------------------------------------- IDX

@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip_file(tmp_path, suffix, dtype):
    a = (np.arange(2 * 3 * 4) - 7).astype(dtype).reshape(2, 3, 4)
    p = tmp_path / ("x-idx3" + suffix)
    D.write_idx(p, a)
    raw = p.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == (suffix == ".gz")
    b = D.read_idx(p)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    np.testing.assert_array_equal(a, b)
    assert b.flags.writeable


def test_idx_header_layout(tmp_path):
    p = tmp_path / "labels"
    D.write_idx(p, np.array([3, 1, 4], dtype=np.uint8))
    assert p.read_bytes() == bytes.fromhex("00000801 00000003") + bytes([3, 1, 4])
    D.write_idx(p, np.zeros((2, 28, 28), np.uint8))
    assert p.read_bytes()[:16] == bytes.fromhex("00000803 00000002 0000001c 0000001c")


@settings(max_examples=40, deadline=None)
@given(hnp.arrays(dtype=st.sampled_from([np.uint8, np.int16, np.float32]),
                  shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5)))
def test_idx_round_trip_property(a):
    buf = io.BytesIO()
    head = bytes([0, 0, {np.dtype(np.uint8): 8, np.dtype(np.int16): 0x0B, np.dtype(np.float32): 0x0D}[a.dtype],
                  a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    buf.write(head + a.astype(a.dtype.newbyteorder(">")).tobytes())
    b = D.parse_idx(buf.getvalue())
    np.testing.assert_array_equal(a, b)
    assert b.shape == a.shape


def test_idx_wrong_magic(tmp_path):
    p = tmp_path / "bad-idx"
    p.write_bytes(bytes.fromhex("12345678") + bytes(8))
    with pytest.raises(ValueError, match=r"bad-idx.*magic number 0x12345678"):
        D.read_idx(p)
    lab = tmp_path / "labels-idx1"
    D.write_idx(lab, np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match=r"labels-idx1.*0x00000801, expected 0x00000803"):
        D.read_idx(lab, magic=0x00000803)
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00")
    with pytest.raises(ValueError, match="short.*too short"):
        D.read_idx(short)


@pytest.mark.parametrize("gz", [False, True])
def test_idx_truncated_and_oversized(tmp_path, gz):
    a = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    good = tmp_path / "good"
    D.write_idx(good, a)
    data = good.read_bytes()
    for name, content, word in [("trunc", data[:-1], "truncated"), ("over", data + b"\x00", "oversized"),
                                ("header", data[:10], "truncated IDX header")]:
        p = tmp_path / (name + (".gz" if gz else ""))
        p.write_bytes(gzip.compress(content) if gz else content)
        with pytest.raises(ValueError, match=word) as ei:
            D.read_idx(p)
        assert str(p) in str(ei.value)


def test_truncated_gzip_stream(tmp_path):
    p = tmp_path / "x-idx3-ubyte.gz"
    D.write_idx(p, np.ones((4, 28, 28), np.uint8))
    p.write_bytes(p.read_bytes()[:-10])
    with pytest.raises(ValueError, match=r"x-idx3-ubyte\.gz.*gzip"):
        D.read_idx(p)


# --------------------------------------------------------------------------- CIFAR binary

def test_cifar_bin_parse_plane_order(tmp_path):
    rec = bytes([7]) + bytes([10]) * 1024 + bytes([20]) * 1024 + bytes([30]) * 1024
    rec2 = bytes([2]) + bytes(range(256)) * 12
    for suffix in ("", ".gz"):
        p = tmp_path / ("b.bin" + suffix)
        data = rec + rec2
        p.write_bytes(gzip.compress(data) if suffix else data)
        x, y = D.read_cifar_bin(p)
        assert x.shape == (2, 3, 32, 32) and x.dtype == np.uint8
        assert y.dtype == np.int64 and y.tolist() == [7, 2]
        assert (x[0, 0] == 10).all() and (x[0, 1] == 20).all() and (x[0, 2] == 30).all()
        assert x[1, 0, 0, :5].tolist() == [0, 1, 2, 3, 4] and x[1, 0, 1, 0] == 32  # row-major


def test_cifar_bin_round_trip_and_errors(tmp_path):
    x = np.random.default_rng(1).integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    y = np.array([0, 9, 3, 3, 1])
    D.write_cifar_bin(tmp_path / "a.bin", x, y)
    x2, y2 = D.read_cifar_bin(tmp_path / "a.bin")
    np.testing.assert_array_equal(x, x2)
    np.testing.assert_array_equal(y, y2)
    data = (tmp_path / "a.bin").read_bytes()
    (tmp_path / "short.bin").write_bytes(data[:-1])
    with pytest.raises(ValueError, match=r"short\.bin.*multiple of the 3073-byte record"):
        D.read_cifar_bin(tmp_path / "short.bin")
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="empty.bin"):
        D.read_cifar_bin(tmp_path / "empty.bin")
    bad = bytearray(data)
    bad[3073] = 42  # label of record 1
    (tmp_path / "lab.bin").write_bytes(bytes(bad))
    with pytest.raises(ValueError, match=r"lab\.bin: label 42 at record 1 is out of range"):
        D.read_cifar_bin(tmp_path / "lab.bin")


# --------------------------------------------------------------------------- data-set loaders

@pytest.mark.parametrize("loader,sub", [(D.mnist, "mnist"), (D.fashion_mnist, "fashion-mnist")])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_dataset_loads_from_root(tmp_path, loader, sub, gz):
    arrays = make_idx_set(tmp_path / "r" / sub, gz=gz, tag=7)
    ds = loader(root=tmp_path / "r", download=False, verify=False)
    assert ds.train_images.shape == (12, 1, 28, 28) and ds.test_images.shape == (5, 1, 28, 28)
    assert ds.train_images.dtype == np.uint8 and ds.train_labels.dtype == np.int64
    np.testing.assert_array_equal(ds.train_images[:, 0], arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(ds.test_labels, 7)
    assert len(ds.classes) == 10
    xtr, ytr, xte, yte = ds
    assert xtr is ds.train_images and yte is ds.test_labels


def test_classes():
    assert D.MNIST_CLASSES == tuple("0123456789")
    assert D.FASHION_MNIST_CLASSES[0] == "T-shirt/top" and D.FASHION_MNIST_CLASSES[9] == "Ankle boot"
    assert D.CIFAR10_CLASSES[0] == "airplane" and D.CIFAR10_CLASSES[9] == "truck"


def test_dataset_verify_digests(tmp_path, monkeypatch):
    make_idx_set(tmp_path / "r", gz=True)
    # the tiny files are not the canonical MNIST: verification must reject them
    with pytest.raises(D.ChecksumError, match=r"train-images-idx3-ubyte\.gz: SHA-256 .*verify=False"):
        D.mnist(root=tmp_path / "r", download=False)
    monkeypatch.setitem(D.SHA256, "mnist", digests_of(tmp_path / "r", IDX_NAMES))
    ds = D.mnist(root=tmp_path / "r", download=False)  # verify=True now passes
    assert ds.train_images.shape[0] == 12


def test_idx_dataset_structure_checks(tmp_path):
    r = tmp_path / "r"
    make_idx_set(r, gz=False)
    D.write_idx(r / "t10k-labels-idx1-ubyte", np.zeros(4, np.uint8))  # 5 images, 4 labels
    with pytest.raises(ValueError, match="4 labels but"):
        D.mnist(root=r, download=False, verify=False)
    D.write_idx(r / "t10k-labels-idx1-ubyte", np.full(5, 10, np.uint8))
    with pytest.raises(ValueError, match="label 10 out of range"):
        D.mnist(root=r, download=False, verify=False)
    D.write_idx(r / "t10k-labels-idx1-ubyte", np.zeros((5, 1), np.uint8))  # magic 0x802
    with pytest.raises(ValueError, match="0x00000802, expected 0x00000801"):
        D.mnist(root=r, download=False, verify=False)
    D.write_idx(r / "t10k-labels-idx1-ubyte", np.zeros(5, np.uint8))
    D.write_idx(r / "t10k-images-idx3-ubyte", np.zeros((5, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="expected 28x28"):
        D.mnist(root=r, download=False, verify=False)


@pytest.mark.parametrize("gz", [False, True])
def test_cifar10_loader(tmp_path, gz, monkeypatch):
    x, y = make_cifar_set(tmp_path / "c" / "cifar-10-batches-bin", n=3, gz=gz)
    ds = D.cifar10(root=tmp_path / "c", download=False, verify=False)
    assert ds.train_images.shape == (15, 3, 32, 32) and ds.test_images.shape == (3, 3, 32, 32)
    np.testing.assert_array_equal(ds.train_images, x[:15])
    np.testing.assert_array_equal(ds.test_labels, y[15:])
    assert ds.train_labels.dtype == np.int64 and ds.classes == D.CIFAR10_CLASSES
    with pytest.raises(D.ChecksumError):
        D.cifar10(root=tmp_path / "c", download=False)
    monkeypatch.setitem(D.SHA256, "cifar10", digests_of(tmp_path / "c" / "cifar-10-batches-bin", CIFAR_NAMES))
    assert D.cifar10(root=tmp_path / "c", download=False).train_images.shape[0] == 15


# --------------------------------------------------------------------------- resolution order

def _source_tag(**kw):
    return int(D.mnist(download=False, verify=False, **kw).train_labels[0])


def test_resolution_order(tmp_path, monkeypatch):
    make_idx_set(tmp_path / "explicit" / "mnist", tag=1)
    make_idx_set(tmp_path / "envdir", tag=2)              # directly in the root
    make_idx_set(default_cache(tmp_path) / "mnist", tag=3)
    make_idx_set(tmp_path / "system" / "mnist", tag=4)
    monkeypatch.setenv("PYCONVNET_DATA", str(tmp_path / "envdir"))
    assert _source_tag(root=tmp_path / "explicit") == 1    # root= beats env
    assert _source_tag() == 2                              # env beats cache
    assert _source_tag(root=tmp_path / "nothing-here") == 2  # an empty root= falls through
    monkeypatch.delenv("PYCONVNET_DATA")
    assert _source_tag() == 3                              # cache beats system
    shutil.rmtree(default_cache(tmp_path))
    assert _source_tag() == 4                              # system location


def test_resolution_env_pathsep_and_subfolder_first(tmp_path, monkeypatch):
    make_idx_set(tmp_path / "a" / "mnist", tag=5)
    make_idx_set(tmp_path / "a", tag=6)
    make_idx_set(tmp_path / "b", tag=8)
    monkeypatch.setenv("PYCONVNET_DATA", os.pathsep.join(["", str(tmp_path / "empty"), str(tmp_path / "b")]))
    assert _source_tag() == 8
    assert _source_tag(root=tmp_path / "a") == 5           # root/mnist/ before root/


def test_incomplete_folder_is_skipped(tmp_path, monkeypatch):
    make_idx_set(tmp_path / "partial", tag=1)
    (tmp_path / "partial" / "t10k-labels-idx1-ubyte.gz").unlink()
    make_idx_set(default_cache(tmp_path) / "mnist", tag=3)
    assert _source_tag(root=tmp_path / "partial") == 3


def test_cache_dir_honours_xdg(tmp_path, monkeypatch):
    assert D.cache_dir() == default_cache(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert D.cache_dir() == tmp_path / "xdg" / "pyconvnet"
    make_idx_set(tmp_path / "xdg" / "pyconvnet" / "mnist", tag=9)
    assert _source_tag() == 9
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")  # ignored per the XDG spec
    assert D.cache_dir() == default_cache(tmp_path)


def test_search_roots_labels(tmp_path, monkeypatch):
    monkeypatch.setenv("PYCONVNET_DATA", str(tmp_path / "e"))
    roots = D.search_roots(tmp_path / "r")
    assert [p for p, _ in roots] == [tmp_path / "r", tmp_path / "e", default_cache(tmp_path), tmp_path / "system"]


# --------------------------------------------------------------------------- not found

def test_not_found_message_lists_locations(tmp_path, monkeypatch):
    monkeypatch.setenv("PYCONVNET_DATA", str(tmp_path / "envdir"))
    with pytest.raises(D.DatasetNotFoundError) as ei:
        D.mnist(root=tmp_path / "myroot")
    err = ei.value
    assert isinstance(err, FileNotFoundError)
    msg = str(err)
    for place in [tmp_path / "myroot" / "mnist", tmp_path / "myroot", tmp_path / "envdir" / "mnist",
                  tmp_path / "envdir", default_cache(tmp_path) / "mnist", default_cache(tmp_path),
                  tmp_path / "system" / "mnist", tmp_path / "system"]:
        assert f"  - {place} (" in msg
    for needle in ["MNIST", "root=", "PYCONVNET_DATA", "train-images-idx3-ubyte[.gz]",
                   "t10k-labels-idx1-ubyte[.gz]", "network disabled in tests", "ossci-datasets"]:
        assert needle in msg
    assert files_under(default_cache(tmp_path)) == []
    assert not default_cache(tmp_path).exists()  # a failed download leaves no empty folders either


def test_not_found_without_download_and_partial_note(tmp_path):
    make_idx_set(tmp_path / "r" / "cifar-10-batches-bin")  # wrong data set: not CIFAR files
    (tmp_path / "r" / "mnist").mkdir()
    D.write_idx(tmp_path / "r" / "mnist" / "train-images-idx3-ubyte", np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(D.DatasetNotFoundError, match="download=False") as ei:
        D.mnist(root=tmp_path / "r", download=False)
    assert "incomplete: has 1 of 4 files" in str(ei.value)
    with pytest.raises(D.DatasetNotFoundError, match=r"(?s)CIFAR-10 .*data_batch_1\.bin\[\.gz\].*cs\.toronto\.edu"):
        D.cifar10(root=tmp_path / "r", download=False)


# --------------------------------------------------------------------------- download

def _serve_from(folder, calls):
    def fetch(url, dest):
        calls.append(url)
        shutil.copyfile(Path(folder) / url.rsplit("/", 1)[1], dest)
    return fetch


def test_download_good_digest(tmp_path, monkeypatch):
    src = tmp_path / "mirror"
    arrays = make_idx_set(src, gz=True, tag=4)
    monkeypatch.setitem(D.SHA256, "mnist", digests_of(src, IDX_NAMES))
    calls = []
    monkeypatch.setattr(_resolve, "_fetch", _serve_from(src, calls))
    ds = D.mnist()
    assert sorted(u.rsplit("/", 1)[1] for u in calls) == sorted(n + ".gz" for n in IDX_NAMES)
    assert all(u.startswith("https://ossci-datasets.s3.amazonaws.com/mnist/") for u in calls)
    np.testing.assert_array_equal(ds.test_images[:, 0], arrays["t10k-images-idx3-ubyte"])
    cached = default_cache(tmp_path) / "mnist"
    assert [p.name for p in files_under(cached)] == sorted(n + ".gz" for n in IDX_NAMES)
    calls.clear()
    D.mnist()  # now found in the cache: no second download
    assert calls == []


def test_download_bad_digest_leaves_nothing(tmp_path, monkeypatch):
    src = tmp_path / "mirror"
    make_idx_set(src, gz=True)
    good = digests_of(src, IDX_NAMES)
    bad = dict(good, **{"t10k-images-idx3-ubyte": "0" * 64})  # one file of four fails
    monkeypatch.setitem(D.SHA256, "fashion-mnist", bad)
    monkeypatch.setattr(_resolve, "_fetch", _serve_from(src, []))
    with pytest.raises(D.ChecksumError, match=r"t10k-images-idx3-ubyte.*SHA-256.*expected 0{64}"):
        D.fashion_mnist()
    assert files_under(default_cache(tmp_path)) == []


def test_download_corrupt_gzip_leaves_nothing(tmp_path, monkeypatch):
    src = tmp_path / "mirror"
    make_idx_set(src, gz=True)
    monkeypatch.setitem(D.SHA256, "mnist", digests_of(src, IDX_NAMES))
    p = src / "train-labels-idx1-ubyte.gz"
    p.write_bytes(p.read_bytes()[:-12])
    monkeypatch.setattr(_resolve, "_fetch", _serve_from(src, []))
    with pytest.raises(D.ChecksumError, match="corrupt"):
        D.mnist()
    assert files_under(default_cache(tmp_path)) == []


def _cifar_archive(tmp_path, extra=()):
    src = tmp_path / "cifar-src"
    x, y = make_cifar_set(src, n=2)
    arc = tmp_path / "cifar-10-binary.tar.gz"
    with tarfile.open(arc, "w:gz") as tf:
        for name in CIFAR_NAMES:
            tf.add(src / name, arcname=f"cifar-10-batches-bin/{name}")
        tf.add(src / "test_batch.bin", arcname="cifar-10-batches-bin/readme.html")
        for arcname in extra:
            tf.add(src / "test_batch.bin", arcname=arcname)
    return src, arc, x, y


def test_download_cifar_archive(tmp_path, monkeypatch):
    evil = ["../../evil.bin", "/tmp/pyconvnet-evil-abs.bin"]
    src, arc, x, y = _cifar_archive(tmp_path, extra=evil)
    monkeypatch.setitem(D.SHA256, "cifar10", digests_of(src, CIFAR_NAMES))
    calls = []

    def fetch(url, dest):
        calls.append(url)
        shutil.copyfile(arc, dest)

    monkeypatch.setattr(_resolve, "_fetch", fetch)
    ds = D.cifar10()
    assert calls == ["https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"]
    np.testing.assert_array_equal(ds.train_images, x[:10])
    np.testing.assert_array_equal(ds.test_labels, y[10:])
    cached = default_cache(tmp_path) / "cifar-10-batches-bin"
    assert [p.name for p in files_under(default_cache(tmp_path))] == sorted(CIFAR_NAMES)  # only the batches
    assert all(p.parent == cached for p in files_under(default_cache(tmp_path)))
    assert not (tmp_path / "home" / "evil.bin").exists() and not Path(evil[1]).exists()


def test_download_cifar_bad_member_digest_leaves_nothing(tmp_path, monkeypatch):
    src, arc, _, _ = _cifar_archive(tmp_path)
    monkeypatch.setitem(D.SHA256, "cifar10", dict(digests_of(src, CIFAR_NAMES), **{"test_batch.bin": "f" * 64}))
    monkeypatch.setattr(_resolve, "_fetch", lambda url, dest: shutil.copyfile(arc, dest))
    with pytest.raises(D.ChecksumError, match=r"member cifar-10-batches-bin/test_batch\.bin"):
        D.cifar10()
    assert files_under(default_cache(tmp_path)) == []
    monkeypatch.setattr(_resolve, "_fetch", lambda url, dest: Path(dest).write_bytes(b"not a tarball"))
    with pytest.raises(D.ChecksumError, match="not a readable tar"):
        D.cifar10()
    assert files_under(default_cache(tmp_path)) == []


# --------------------------------------------------------------------------- ImageFolder

def _make_image_tree(root, pil):
    colors = {"red": (255, 0, 0), "blue": (0, 0, 255), "green": (0, 255, 0)}
    for k, (cls, col) in enumerate(sorted(colors.items())):
        d = root / cls
        d.mkdir(parents=True)
        for i in range(k + 2):  # blue: 2, green: 3, red: 4 images
            pil.new("RGB", (10 + 3 * i, 7 + i), col).save(d / f"img{i}.png")
    (root / "red" / "notes.txt").write_text("not an image")
    (root / ".hidden").mkdir()
    return colors


def test_image_folder(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    root = tmp_path / "imgs"
    colors = _make_image_tree(root, Image)
    ds = D.ImageFolder(root, size=(6, 5), batch_size=4)
    assert ds.classes == ["blue", "green", "red"] and ds.num_samples == 9 and len(ds) == 3
    batches = list(ds)
    assert len(batches) == 3 and [b[0].shape[0] for b in batches] == [4, 4, 1]
    xs = np.concatenate([b[0] for b in batches])
    ys = np.concatenate([b[1] for b in batches])
    assert xs.shape == (9, 3, 6, 5) and xs.dtype == np.float32 and ys.dtype == np.int64
    assert ys.tolist() == [0, 0, 1, 1, 1, 2, 2, 2, 2]
    assert xs.min() >= 0.0 and xs.max() <= 1.0
    for x, lab in zip(xs, ys):
        expect = np.array(colors[ds.classes[lab]], np.float32) / 255
        np.testing.assert_allclose(x.mean(axis=(1, 2)), expect, atol=1e-6)
    g = D.ImageFolder(root, size=8, grayscale=True, batch_size=9, drop_last=True)
    (x, y), = list(g)
    assert x.shape == (9, 1, 8, 8) and len(g) == 1


def test_image_folder_shuffle_seeded_and_transform(tmp_path):
    Image = pytest.importorskip("PIL.Image")
    _make_image_tree(tmp_path / "imgs", Image)
    a = D.ImageFolder(tmp_path / "imgs", size=(4, 4), batch_size=9, shuffle=True, seed=3)
    b = D.ImageFolder(tmp_path / "imgs", size=(4, 4), batch_size=9, shuffle=True, seed=3)
    epochs_a = [next(iter(a))[1].tolist() for _ in range(4)]
    epochs_b = [next(iter(b))[1].tolist() for _ in range(4)]
    assert epochs_a == epochs_b  # reproducible from the seed
    assert len({tuple(e) for e in epochs_a}) > 1  # a new order each epoch
    assert all(sorted(e) == [0, 0, 1, 1, 1, 2, 2, 2, 2] for e in epochs_a)
    t = D.ImageFolder(tmp_path / "imgs", size=(4, 4), batch_size=9, transform=D.Normalize(0.5, 0.5))
    x, _ = next(iter(t))
    assert x.min() >= -1.0 and x.max() <= 1.0 and x.min() < 0


def test_image_folder_errors(tmp_path, monkeypatch):
    pytest.importorskip("PIL.Image")
    (tmp_path / "empty" / "cls").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no images"):
        D.ImageFolder(tmp_path / "empty")
    (tmp_path / "flat").mkdir()
    with pytest.raises(FileNotFoundError, match="no class sub-folders"):
        D.ImageFolder(tmp_path / "flat")
    (tmp_path / "broken" / "a").mkdir(parents=True)
    (tmp_path / "broken" / "a" / "x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"cannot read image .*x\.png"):
        list(D.ImageFolder(tmp_path / "broken", size=4))


def test_image_folder_without_pillow(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "PIL", None)
    (tmp_path / "a").mkdir()
    with pytest.raises(ImportError, match="pip install pillow"):
        D.ImageFolder(tmp_path)


# --------------------------------------------------------------------------- augmentations

def _shift(img, dy, dx):
    out = np.zeros_like(img)
    h, w = img.shape[-2:]
    out[..., max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        img[..., max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def test_random_translate_is_a_zero_filled_shift():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, (64, 2, 9, 8), dtype=np.uint8)
    s = 2
    y = D.random_translate(x, s, rng)
    assert y.shape == x.shape and y.dtype == x.dtype
    seen = set()
    for xi, yi in zip(x, y):
        matches = [(dy, dx) for dy in range(-s, s + 1) for dx in range(-s, s + 1)
                   if np.array_equal(_shift(xi, dy, dx), yi)]
        assert len(matches) == 1  # inputs have no zeros, so the shift is identified uniquely
        seen.add(matches[0])
    assert len(seen) > 10  # independent offsets per image
    np.testing.assert_array_equal(D.random_translate(x, 0, rng), x)
    big = D.random_translate(x, 20, rng)  # shifts past the edge give blank images, no error
    assert big.shape == x.shape and (big == 0).all(axis=(1, 2, 3)).any()


def test_random_translate_keeps_content_and_redraws():
    rng = np.random.default_rng(1)
    x = np.zeros((32, 1, 12, 12), np.float32)
    x[:, :, 3:9, 3:9] = rng.random((32, 1, 6, 6)) + 0.1  # zero border wider than the shift
    a = D.random_translate(x, 3, rng)
    b = D.random_translate(x, 3, rng)
    np.testing.assert_allclose(a.sum(axis=(1, 2, 3)), x.sum(axis=(1, 2, 3)), rtol=1e-6)  # nothing lost
    assert (a != 0).sum() == (x != 0).sum()
    assert not np.array_equal(a, b)  # fresh offsets on every call (every epoch)
    c = D.random_translate(x, (0, 3), np.random.default_rng(2))
    np.testing.assert_allclose(c.sum(axis=3), x.sum(axis=3), rtol=1e-5)  # rows untouched when y shift is 0
    assert x[:, :, 3:9, 3:9].min() > 0  # input not modified


def test_random_crop():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 256, (16, 3, 10, 10), dtype=np.uint8)
    y = D.random_crop(x, 10, 2, rng)
    assert y.shape == x.shape
    for xi, yi in zip(x, y):
        assert any(np.array_equal(_shift(xi, dy, dx), yi) for dy in range(-2, 3) for dx in range(-2, 3))
    z = D.random_crop(x, (6, 7), 0, rng)
    assert z.shape == (16, 3, 6, 7)
    for xi, zi in zip(x, z):
        assert any(np.array_equal(xi[:, i:i + 6, j:j + 7], zi) for i in range(5) for j in range(4))
    np.testing.assert_array_equal(D.random_crop(x, 10, 0, rng), x)
    with pytest.raises(ValueError, match="does not fit"):
        D.random_crop(x, 15, 2, rng)


def test_random_hflip():
    rng = np.random.default_rng(0)
    x = rng.random((50, 3, 4, 5))
    once = D.random_hflip(x, rng, p=1.0)
    np.testing.assert_array_equal(once, x[..., ::-1])
    np.testing.assert_array_equal(D.random_hflip(once, rng, p=1.0), x)  # involution
    np.testing.assert_array_equal(D.random_hflip(x, rng, p=0.0), x)
    y = D.random_hflip(x, rng)
    flipped = [np.array_equal(yi, xi[..., ::-1]) for xi, yi in zip(x, y)]
    same = [np.array_equal(yi, xi) for xi, yi in zip(x, y)]
    assert all(f or s for f, s in zip(flipped, same)) and 5 < sum(flipped) < 45


def test_pixel_permutation():
    rng = np.random.default_rng(0)
    x = rng.random((6, 2, 7, 5)).astype(np.float32)
    perm = D.PixelPermutation(seed=3)
    y = perm(x, rng)
    assert y.shape == x.shape and not np.array_equal(x, y)
    np.testing.assert_array_equal(perm.inverse(y), x)
    np.testing.assert_array_equal(perm.apply(perm.inverse(x)), x)
    idx = perm.indices(7, 5)
    assert sorted(idx.tolist()) == list(range(35))
    for i in range(6):  # the same permutation for every image and channel
        for c in range(2):
            np.testing.assert_array_equal(y[i, c].reshape(-1), x[i, c].reshape(-1)[idx])
    np.testing.assert_array_equal(perm.apply(x[2]), y[2])  # also on a single (C, H, W) image
    np.testing.assert_array_equal(D.PixelPermutation(3).apply(x), y)  # same seed, same permutation
    assert not np.array_equal(D.PixelPermutation(4).apply(x), y)


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(np.float64, hnp.array_shapes(min_dims=4, max_dims=4, min_side=1, max_side=6),
                  elements=st.floats(-100, 100)), st.integers(1, 7))
def test_mean_std_matches_numpy(x, chunk):
    m, s = D.mean_std(x, chunk=chunk)
    np.testing.assert_allclose(m, x.mean(axis=(0, 2, 3)), atol=1e-9, rtol=1e-9)
    np.testing.assert_allclose(s, x.std(axis=(0, 2, 3)), atol=1e-7, rtol=1e-7)


def test_normalize_and_conversions():
    rng = np.random.default_rng(0)
    x8 = rng.integers(0, 256, (40, 3, 6, 6), dtype=np.uint8)
    xf = D.to_float32(x8)
    assert xf.dtype == np.float32 and xf.min() >= 0 and xf.max() <= 1
    np.testing.assert_array_equal(D.to_uint8(xf), x8)
    mean, std = D.mean_std(xf)
    assert mean.shape == (3,) and std.shape == (3,)
    z = D.normalize(xf, mean, std)
    assert z.dtype == np.float32
    m2, s2 = D.mean_std(z)
    np.testing.assert_allclose(m2, 0, atol=1e-5)
    np.testing.assert_allclose(s2, 1, atol=1e-5)
    z8 = D.normalize(x8, *D.mean_std(x8))  # same units in, same result
    np.testing.assert_allclose(z8, z, atol=1e-4)
    np.testing.assert_allclose(D.normalize(xf, 0.5, 0.25), (xf - 0.5) / 0.25, rtol=1e-6)
    with pytest.raises(ValueError, match="2 values for 3 channels"):
        D.normalize(xf, [0, 0], [1, 1])
    with pytest.raises(ValueError, match="positive"):
        D.normalize(xf, 0, 0)
    with pytest.raises(TypeError):
        D.to_float32(np.zeros(3, np.int32))


def test_compose():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (8, 3, 8, 8), dtype=np.uint8)
    aug = D.Compose(D.ToFloat32(), D.RandomCrop(8, padding=1), D.RandomHFlip(), D.RandomTranslate(1),
                    D.PixelPermutation(0), D.Normalize([0.5] * 3, [0.5] * 3))
    a = aug(x, np.random.default_rng(5))
    b = aug(x, np.random.default_rng(5))
    assert a.shape == x.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)  # reproducible given the generator's seed
    assert "RandomCrop" in repr(aug)


def test_no_pickle_in_sources():
    src = Path(D.__file__).parent
    for f in src.glob("*.py"):
        text = f.read_text()
        assert "import pickle" not in text and "allow_pickle=True" not in text, f


# --------------------------------------------------------------------------- real data

@pytest.mark.slow
def test_real_mnist(monkeypatch):
    if not REAL_DATA:
        pytest.skip("set PYCONVNET_DATA to a folder holding MNIST to run this test")
    found = any((Path(r) / sub / (IDX_NAMES[0] + sfx)).is_file()
                for r in REAL_DATA.split(os.pathsep) if r for sub in ("mnist", "") for sfx in ("", ".gz"))
    if not found:
        pytest.skip(f"no MNIST files under $PYCONVNET_DATA={REAL_DATA}")
    monkeypatch.setenv("PYCONVNET_DATA", REAL_DATA)
    ds = D.mnist(download=False, verify=True)  # verify=True checks every file's SHA-256
    assert ds.train_images.shape == (60000, 1, 28, 28) and ds.test_images.shape == (10000, 1, 28, 28)
    assert ds.train_labels.shape == (60000,) and ds.test_labels.shape == (10000,)
    assert ds.train_images.dtype == np.uint8 and ds.train_labels.dtype == np.int64
    assert ds.train_labels.min() == 0 and ds.train_labels.max() == 9
    assert np.bincount(ds.test_labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    for name, path in ds.files.items():
        assert sha256_of_file(path) == D.SHA256["mnist"][name]


def test_reflect_crop_and_alternating_flip():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (6, 3, 8, 8), dtype=np.uint8)
    # a crop at offset (dy, dx) of the reflect-padded image: check against np.pad per image
    out = D.random_crop(x, 8, 2, np.random.default_rng(5), mode="reflect")
    padded = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)), mode="reflect")
    for i in range(len(x)):
        hits = [(dy, dx) for dy in range(5) for dx in range(5)
                if np.array_equal(out[i], padded[i, :, dy:dy + 8, dx:dx + 8])]
        assert hits, f"image {i}: not a window of its reflect-padded copy"
    with pytest.raises(ValueError, match="mode"):
        D.random_crop(x, 8, 2, 0, mode="wrap")
    flipped = np.array([True, False, True, False, False, True])
    e0, e1 = D.alternating_flip(x, 0, flipped), D.alternating_flip(x, 1, flipped)
    for i in range(len(x)):
        np.testing.assert_array_equal(e0[i], x[i, :, :, ::-1] if flipped[i] else x[i])
        np.testing.assert_array_equal(e1[i], x[i] if flipped[i] else x[i, :, :, ::-1])  # the other way round
    np.testing.assert_array_equal(D.alternating_flip(x, 2, flipped), e0)
    with pytest.raises(ValueError, match="flipped"):
        D.alternating_flip(x, 0, flipped[:3])
