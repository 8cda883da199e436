"""Tests for pyconvnet.checkpoint: round trips of every zoo model (also into a fresh
process), optimizer state and exact resume, atomic writes, and rejection of
corrupt or foreign files with CheckpointError."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import numpy as np

import pyconvnet
import pytest

from pyconvnet import losses, models, optim
from pyconvnet.checkpoint import FORMAT, CheckpointError, load_checkpoint, save_checkpoint
from pyconvnet.training import History, fit, predict, to_float


GEOMETRY = {"mlp3": (1, 28, 28), "lenet5": (1, 28, 28), "keras_cnn": (1, 28, 28), "cifar_cnn": (3, 32, 32),
            "robust_lenet5": (1, 28, 28)}


def images(n, shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n,) + tuple(shape), dtype=np.uint8)


def toy_data(n=64, seed=0):
    """Learnable 28x28 data: class k is a bright square at a class-dependent place."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % 10)
    x = rng.integers(0, 60, (n, 1, 28, 28)).astype(np.uint8)
    for i, k in enumerate(y):
        r, c = 3 + 12 * (k // 5), 1 + 5 * (k % 5)
        x[i, 0, r:r + 6, c:c + 6] = 255
    return x, y.astype(np.int64)


def trained_model(name, steps=1, seed=0):
    """A zoo model after a few Adam steps (so weights, BatchNorm statistics and the
    optimizer slots are all non-trivial)."""
    shape = GEOMETRY[name]
    model = models.build(name, shape, seed=seed)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    loss = losses.SoftmaxCrossEntropy()
    x, y = to_float(images(8, shape, seed=1)), np.arange(8) % 10
    for _ in range(steps):
        loss.forward(model.forward(x, training=True), y)
        model.backward(loss.backward())
        opt.step()
    return model, opt


def assert_state_equal(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("name", list(models.MODELS))
def test_round_trip_every_zoo_model(tmp_path, name):
    model, opt = trained_model(name)
    path = tmp_path / f"{name}.npz"
    meta = {"model": name, "epoch": 3, "acc": np.float32(0.5), "n": np.int64(7), "history": {"loss": [1.0, 0.5]}}
    assert save_checkpoint(path, model, opt, meta=meta) == str(path)
    ck = load_checkpoint(path)
    assert type(ck.model) is type(model)
    assert ck.config == model.config() == ck.model.config()
    assert_state_equal(ck.model.state_dict(), model.state_dict())
    x = to_float(images(5, GEOMETRY[name], seed=2))
    np.testing.assert_array_equal(predict(ck.model, x), predict(model, x))
    assert ck.meta == {"model": name, "epoch": 3, "acc": 0.5, "n": 7, "history": {"loss": [1.0, 0.5]}}
    assert ck.optimizer_name == "Adam"
    assert_state_equal(ck.optimizer_state, opt.state_dict())


def test_buffers_are_saved(tmp_path):
    """cifar_cnn's BatchNorm running statistics travel with the weights."""
    model, _ = trained_model("cifar_cnn")
    buffers = model.buffers
    assert buffers and any(not np.all(v == 0) for v in buffers.values())
    save_checkpoint(tmp_path / "c.npz", model)
    ck = load_checkpoint(tmp_path / "c.npz")
    assert_state_equal(ck.model.buffers, buffers)


def test_without_optimizer_and_meta(tmp_path):
    model = models.build("mlp3", (1, 28, 28))
    save_checkpoint(tmp_path / "m.npz", model)
    ck = load_checkpoint(str(tmp_path / "m.npz"))
    assert ck.optimizer_name is None and ck.optimizer_state == {} and ck.meta == {}


def test_creates_folder_and_overwrites(tmp_path):
    a, b = models.build("lenet5", (1, 28, 28), seed=0), models.build("lenet5", (1, 28, 28), seed=1)
    path = tmp_path / "new" / "sub" / "ck.npz"
    save_checkpoint(path, a)
    save_checkpoint(path, b)
    assert_state_equal(load_checkpoint(path).model.state_dict(), b.state_dict())
    assert sorted(os.listdir(path.parent)) == ["ck.npz"]


def test_file_permissions_follow_umask(tmp_path):
    """The temporary file of the atomic write must not leave the checkpoint private (0600)."""
    mask = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "p.npz", models.build("mlp3", (1, 28, 28), hidden=4))
    finally:
        os.umask(mask)
    assert (tmp_path / "p.npz").stat().st_mode & 0o777 == 0o644


def test_fresh_process_predicts_bit_identically(tmp_path):
    """Every zoo model saved here, loaded in a new interpreter: same logits, bit for bit."""
    x_paths = {}
    for name in models.MODELS:
        model, _ = trained_model(name)
        save_checkpoint(tmp_path / f"{name}.npz", model)
        x = to_float(images(4, GEOMETRY[name], seed=3))
        np.save(tmp_path / f"{name}_x.npy", x)
        np.save(tmp_path / f"{name}_here.npy", predict(model, x))
        x_paths[name] = tmp_path / f"{name}_x.npy"
    code = (
        "import sys, numpy as np\n"
        "from pyconvnet.checkpoint import load_checkpoint\n"
        "from pyconvnet.training import predict\n"
        "d = sys.argv[1]\n"
        "for name in sys.argv[2:]:\n"
        "    ck = load_checkpoint(f'{d}/{name}.npz')\n"
        "    np.save(f'{d}/{name}_there.npy', predict(ck.model, np.load(f'{d}/{name}_x.npy')))\n"
    )
    # the subprocess imports the same pyconvnet as this test (installed or in-tree build),
    # from a cwd where the source tree cannot shadow it
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(pyconvnet.__file__)))
    env = dict(os.environ, PYTHONPATH=pkg_root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path), *models.MODELS], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    for name in models.MODELS:
        here, there = np.load(tmp_path / f"{name}_here.npy"), np.load(tmp_path / f"{name}_there.npy")
        assert here.shape == (4, 10)
        np.testing.assert_array_equal(there, here, err_msg=name)


def test_loads_without_pickle_and_holds_no_objects(tmp_path):
    model, opt = trained_model("robust_lenet5")
    save_checkpoint(tmp_path / "r.npz", model, opt, meta={"history": History().as_dict()})
    with np.load(tmp_path / "r.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    assert arrays and all(a.dtype != object for a in arrays.values())
    assert json.loads(arrays["__format__"].tobytes()) == FORMAT
    assert arrays["__config__"].dtype == np.uint8
    assert any(k.startswith("model/") for k in arrays) and any(k.startswith("optim/") for k in arrays)
    # a plain zip of .npy files (np.savez, uncompressed)
    with zipfile.ZipFile(tmp_path / "r.npz") as zf:
        assert all(n.endswith(".npy") for n in zf.namelist())


# ------------------------------------------------------------------ optimizer state and resume
@pytest.mark.parametrize("opt_cls", [optim.MomentumSGD, optim.Adam, optim.AdaDelta])
def test_optimizer_state_round_trip(tmp_path, opt_cls):
    model = models.build("lenet5", (1, 28, 28))
    opt = opt_cls(model.parameters(), lr=0.01)
    fit(model, toy_data(32), 1, 8, opt, losses.SoftmaxCrossEntropy(), verbose=False)
    save_checkpoint(tmp_path / "o.npz", model, opt)
    ck = load_checkpoint(tmp_path / "o.npz")
    assert ck.optimizer_name == opt_cls.__name__
    opt2 = opt_cls(ck.model.parameters(), lr=0.5)
    opt2.load_state_dict(ck.optimizer_state)
    assert_state_equal(opt2.state_dict(), opt.state_dict())
    assert opt2.lr == opt.lr and opt2.step_count == opt.step_count == 4


def _run(model, opt, data, epochs, **kw):
    return fit(model, data, epochs=epochs, batch_size=16, optimizer=opt, loss=losses.SoftmaxCrossEntropy(),
               seed=5, verbose=False, validation=toy_data(20, seed=9), **kw)


@pytest.mark.parametrize("name, opt_cls, n", [("lenet5", optim.MomentumSGD, 64), ("keras_cnn", optim.Adam, 32)])
def test_resume_equals_uninterrupted(tmp_path, name, opt_cls, n):
    """2 epochs straight == 1 epoch, save, load (model, optimizer, history), then epoch 2
    with initial_epoch=1, epochs=2 (Keras semantics: epochs is the final epoch). keras_cnn has
    Dropout: fit reseeds it from (seed, epoch), so resuming replays the same masks."""
    data = toy_data(n)
    a = models.build(name, (1, 28, 28))
    opt_a = opt_cls(a.parameters(), lr=0.01)
    h_a = _run(a, opt_a, data, 2)

    b = models.build(name, (1, 28, 28))
    opt_b = opt_cls(b.parameters(), lr=0.01)
    h_b = _run(b, opt_b, data, 1)
    save_checkpoint(tmp_path / "ck.npz", b, opt_b, meta={"epoch": 1, "history": h_b.as_dict()})
    del b, opt_b

    ck = load_checkpoint(tmp_path / "ck.npz")
    c = ck.model
    opt_c = opt_cls(c.parameters(), lr=0.123)
    opt_c.load_state_dict(ck.optimizer_state)
    history = History.from_dict(ck.meta["history"])
    h_c = _run(c, opt_c, data, 2, history=history, initial_epoch=ck.meta["epoch"])  # Keras: 2 = the final epoch

    assert h_c is history
    assert_state_equal(c.state_dict(), a.state_dict())
    assert_state_equal(opt_c.state_dict(), opt_a.state_dict())
    da, dc = h_a.as_dict(), h_c.as_dict()
    for d in (da, dc):
        d.pop("seconds"), d.pop("train_seconds")
    assert dc == da and dc["epoch"] == [1, 2]


# ------------------------------------------------------------------ atomic write
def _listing(folder):
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_write_keeps_previous_file(tmp_path, monkeypatch, exc):
    path = tmp_path / "ck.npz"
    save_checkpoint(path, models.build("lenet5", (1, 28, 28), seed=0))
    before = path.read_bytes()

    def broken_savez(f, **arrays):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise exc

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(type(exc)):
        save_checkpoint(path, models.build("lenet5", (1, 28, 28), seed=1))
    assert path.read_bytes() == before
    assert _listing(tmp_path) == ["ck.npz"]  # no temporary files left
    monkeypatch.undo()
    assert_state_equal(load_checkpoint(path).model.state_dict(),
                       models.build("lenet5", (1, 28, 28), seed=0).state_dict())


def test_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    def broken_savez(f, **arrays):
        f.write(b"PK")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(tmp_path / "ck.npz", models.build("mlp3", (1, 28, 28), hidden=4))
    assert _listing(tmp_path) == []


def test_unserialisable_meta_fails_before_touching_the_file(tmp_path):
    path = tmp_path / "ck.npz"
    model = models.build("mlp3", (1, 28, 28), hidden=4)
    save_checkpoint(path, model)
    before = path.read_bytes()
    with pytest.raises(TypeError):
        save_checkpoint(path, model, meta={"bad": object()})
    assert path.read_bytes() == before and _listing(tmp_path) == ["ck.npz"]


# ------------------------------------------------------------------ bad files
@pytest.fixture
def good(tmp_path):
    path = tmp_path / "good.npz"
    model, opt = trained_model("lenet5")
    save_checkpoint(path, model, opt, meta={"epoch": 1})
    return path


def _npz(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


def _text(obj):
    return np.frombuffer(json.dumps(obj).encode(), np.uint8)


def test_truncated_files(tmp_path, good):
    data = good.read_bytes()
    for cut in (0, 10, len(data) // 2, len(data) - 30):
        bad = tmp_path / f"cut{cut}.npz"
        bad.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="cut"):
            load_checkpoint(bad)


def test_corrupted_bytes_are_detected(tmp_path, good):
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as zf:
        info = next(i for i in zf.infolist() if i.filename.startswith("model/layers.0.weight"))
    pos = info.header_offset + 30 + len(info.filename) + len(info.extra) + 200  # inside the array data
    data[pos] ^= 0xFF
    bad = tmp_path / "flipped.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_checkpoint(bad)


def test_garbage_files(tmp_path):
    cases = {"random.npz": np.random.default_rng(0).bytes(500), "text.npz": b"hello, not a checkpoint\n",
             "empty.npz": b""}
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(CheckpointError, match=name):
            load_checkpoint(tmp_path / name)
    np.save(tmp_path / "plain.npy", np.arange(3))
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "plain.npy")
    (tmp_path / "adir.npz").mkdir()
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "adir.npz")


def test_missing_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.npz")


def test_foreign_npz(tmp_path):
    with pytest.raises(CheckpointError, match="not a pyconvnet checkpoint"):
        load_checkpoint(_npz(tmp_path / "a.npz", weights=np.arange(3.0)))
    with pytest.raises(CheckpointError, match="unsupported checkpoint format"):
        load_checkpoint(_npz(tmp_path / "b.npz", __format__=_text("something-else-9")))


def test_pickled_object_array_is_refused(tmp_path, good):
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["__meta__"] = np.array([{"evil": 1}], dtype=object)
    with pytest.raises(CheckpointError):
        load_checkpoint(_npz(tmp_path / "obj.npz", **arrays))


@pytest.mark.parametrize("mutate", ["format_not_text", "config_not_json", "config_unknown_layer",
                                    "config_wrong_shape", "missing_weight", "meta_not_json"])
def test_damaged_contents_raise_checkpoint_error(tmp_path, good, mutate):
    """Every way a structurally valid .npz can hold a bad checkpoint is a CheckpointError
    (which the CLI turns into a one-line message), never a bare ValueError/KeyError."""
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    if mutate == "format_not_text":
        arrays["__format__"] = np.array([1.5, -2.0e300])
    elif mutate == "config_not_json":
        arrays["__config__"] = np.frombuffer(b"{not json", np.uint8)
    elif mutate == "config_unknown_layer":
        arrays["__config__"] = _text({"class": "NoSuchLayer", "args": {}})
    elif mutate == "config_wrong_shape":
        cfg = json.loads(arrays["__config__"].tobytes())
        cfg["args"]["layers"][0]["args"]["out_channels"] = 7
        arrays["__config__"] = _text(cfg)
    elif mutate == "missing_weight":
        del arrays["model/layers.0.weight"]
    elif mutate == "meta_not_json":
        arrays["__meta__"] = np.frombuffer(b"\xff\xfe", np.uint8)
    with pytest.raises(CheckpointError, match="bad.npz"):
        load_checkpoint(_npz(tmp_path / "bad.npz", **arrays))


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


@pytest.mark.parametrize("name, key", [("graph_v0_1.npz", "graph"), ("relaxed_v0_1.npz", "relaxed")])
def test_checkpoints_written_by_version_0_1_still_load(name, key):
    """Files written by pyconvnet 0.1.0 (before the package was split by layer): a Graph of
    conv/BN/pool/upsample/concat/transposed conv/dropout/linear with its Adam state, and a
    RelaxedConv network. They load, rebuild the same architecture and predict what 0.1.0 did."""
    ck = load_checkpoint(os.path.join(FIXTURES, name))
    with np.load(os.path.join(FIXTURES, "v0_1_outputs.npz"), allow_pickle=False) as z:
        x, want = z[f"{key}_x"], z[f"{key}_y"]
    np.testing.assert_allclose(ck.model.forward(x, training=False), want, rtol=1e-5, atol=1e-6)
    if key == "graph":
        assert ck.optimizer_name == "Adam" and ck.optimizer_state
        opt = optim.Adam(ck.model.parameters(), lr=1e-2)
        opt.load_state_dict(ck.optimizer_state)
        # 0.1.0 stored no hyper-parameters: Checkpoint.optimizer() says how to rebuild it by hand
        with pytest.raises(CheckpointError, match=r"written by pyconvnet 0\.1\.0.*load_state_dict"):
            ck.optimizer()


# ------------------------------------------------------------------ Checkpoint.optimizer()
@pytest.mark.parametrize("make", [
    lambda m: optim.Adam(m.parameters(), lr=3e-3, beta1=0.8, weight_decay=1e-4),
    lambda m: optim.MomentumSGD(m.parameters(), lr=0.02, momentum=0.7, scheduler=optim.CosineAnnealing(T_max=4)),
    lambda m: optim.AdaDelta(m.parameters(), lr=1.0, rho=0.9),
])
def test_checkpoint_rebuilds_the_optimizer(tmp_path, make):
    """ck.optimizer(): the same class, hyper-parameters, schedule and state, without
    rebuilding it by hand; training on with it equals training on with the original."""
    data = toy_data(32)
    a = models.build("lenet5", (1, 28, 28))
    opt_a = make(a)
    _run(a, opt_a, data, 1)
    save_checkpoint(tmp_path / "ck.npz", a, opt_a, meta={"epoch": 1})
    ck = load_checkpoint(tmp_path / "ck.npz")
    opt_b = ck.optimizer()
    assert type(opt_b) is type(opt_a) and opt_b.config() == opt_a.config()
    assert_state_equal(opt_b.state_dict(), opt_a.state_dict())
    _run(a, opt_a, data, 2, initial_epoch=ck.epoch)
    _run(ck.model, opt_b, data, 2, initial_epoch=ck.epoch)
    assert_state_equal(ck.model.state_dict(), a.state_dict())
    assert_state_equal(opt_b.state_dict(), opt_a.state_dict())


def test_checkpoint_optimizer_overrides_and_errors(tmp_path):
    m = models.build("mlp3", (1, 28, 28))
    opt = optim.SGD(m.parameters(), lr=0.1, scheduler=lambda e: 0.1 / (e + 1))
    save_checkpoint(tmp_path / "f.npz", m, opt)
    ck = load_checkpoint(tmp_path / "f.npz")
    with pytest.raises(CheckpointError, match=r"scheduler was a Python function.*optimizer\(scheduler=\.\.\.\)"):
        ck.optimizer()
    o = ck.optimizer(scheduler=optim.StepLR(2, 0.5))
    assert isinstance(o.scheduler, optim.StepLR) and o.base_lr == 0.1
    save_checkpoint(tmp_path / "none.npz", m)
    with pytest.raises(CheckpointError, match="holds no optimizer"):
        load_checkpoint(tmp_path / "none.npz").optimizer()
    assert load_checkpoint(tmp_path / "none.npz").epoch == 0


def test_text_file_is_not_a_checkpoint_and_no_unpickling_advice(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("lr = 0.05\n")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(notes)
    assert "not a .npz checkpoint" in str(e.value) and "pickle" not in str(e.value)
    np.save(tmp_path / "a.npy", np.arange(3))
    with pytest.raises(CheckpointError, match=r"a \.npy array"):
        load_checkpoint(tmp_path / "a.npy")
