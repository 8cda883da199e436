"""pyconvnet.checkpoint.save_safetensors / load_safetensors and the format code (_safetensors):
round trips, torch's names both ways (with the safetensors package and torch when installed),
and headers that lie."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from pyconvnet import layers as L
from pyconvnet import models
from pyconvnet._safetensors import read_safetensors, write_safetensors
from pyconvnet.checkpoint import load_safetensors, save_safetensors


def randomised(model, seed=0):
    rng = np.random.default_rng(seed)
    for k, v in model.state_dict().items():
        if v.dtype.kind == "f":
            model.load_state_dict({k: rng.standard_normal(v.shape).astype(v.dtype) ** 2 + 0.1}, strict=False)
    return model


def test_round_trip_sequential_names_and_metadata(tmp_path):
    m = randomised(models.cifar_cnn())
    path = save_safetensors(m, tmp_path / "c.safetensors", metadata={"note": "x"})
    tensors, meta = read_safetensors(path)
    assert {"0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked",
            "20.weight", "20.bias"} <= set(tensors)
    assert tensors["1.num_batches_tracked"].dtype == np.int64 and tensors["1.num_batches_tracked"].shape == ()
    assert meta["note"] == "x" and json.loads(meta["pyconvnet.config"]) == json.loads(json.dumps(m.config()))
    fresh = models.cifar_cnn(seed=5)
    load_safetensors(fresh, path)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[k], v)
    rebuilt = load_safetensors(None, path)  # from the config in the metadata
    x = np.random.default_rng(0).random((2, 3, 32, 32)).astype(np.float32)
    np.testing.assert_array_equal(rebuilt.forward(x), m.forward(x))


def test_graph_and_named_sequential_names(tmp_path):
    g = randomised(models.robust_lenet5())
    tensors, _ = read_safetensors(save_safetensors(g, tmp_path / "g.safetensors"))
    assert "c1.weight" in tensors and "out.bias" in tensors
    s = L.Sequential(("features", L.Sequential(L.Conv2d(1, 2, 3), L.ReLU())), ("head", L.Linear(2, 3)))
    tensors, _ = read_safetensors(save_safetensors(s, tmp_path / "s.safetensors"))
    assert sorted(tensors) == ["features.0.bias", "features.0.weight", "head.bias", "head.weight"]


def test_relaxed_index_buffer_round_trips(tmp_path):
    m = models.relaxed_net(6, seed=2)
    m[0].discretize()
    path = save_safetensors(m, tmp_path / "r.safetensors")
    other = models.relaxed_net(6, seed=9, dtype=np.float32)
    other[0].discretize()
    load_safetensors(other, path)
    np.testing.assert_array_equal(other[0]._buffers["index"], m[0]._buffers["index"])


def test_missing_and_unexpected_tensors(tmp_path):
    path = write_safetensors(tmp_path / "w.safetensors", {"0.weight": np.zeros((2, 1, 3, 3), np.float32),
                                                          "9.weight": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"missing tensors \['0.bias'\] and unexpected tensors \['9.weight'\]"):
        load_safetensors(L.Sequential(L.Conv2d(1, 2, 3)), path)
    with pytest.raises(ValueError, match="expected shape"):
        write_safetensors(tmp_path / "b.safetensors", {"0.weight": np.zeros((2, 1, 3, 2), np.float32),
                                                       "0.bias": np.zeros(2, np.float32)})
        load_safetensors(L.Sequential(L.Conv2d(1, 2, 3)), tmp_path / "b.safetensors")
    with pytest.raises(ValueError, match="no pyconvnet config"):
        load_safetensors(None, path)


def test_num_batches_tracked_may_be_missing_and_half_precision_loads(tmp_path):
    bn = L.Sequential(L.BatchNorm2d(3))
    rng = np.random.default_rng(0)
    tensors = {"0.weight": rng.random(3).astype(np.float16), "0.bias": rng.random(3).astype(np.float64),
               "0.running_mean": rng.random(3).astype(np.float32), "0.running_var": rng.random(3).astype(np.float32)}
    load_safetensors(bn, write_safetensors(tmp_path / "h.safetensors", tensors))
    np.testing.assert_allclose(bn.params["layers.0.weight"], tensors["0.weight"].astype(np.float32))
    np.testing.assert_allclose(bn.params["layers.0.bias"], tensors["0.bias"].astype(np.float32), rtol=1e-7)


def _file(header, data=b"", pad=True):
    text = json.dumps(header).encode()
    if pad:
        text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


_DUP = b'{"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}'
LIES = {
    "short": (b"\x01\x02", "shorter than the 8-byte header length"),
    "huge_header": (struct.pack("<Q", 2**40) + b"{}", "header length"),
    "header_past_end": (struct.pack("<Q", 50) + b"{}", "runs past the end"),
    "not_json": (struct.pack("<Q", 4) + b"{abc", "not a JSON object"),
    "json_list": (_file([1, 2]), "not an object"),
    "duplicate": (struct.pack("<Q", len(_DUP)) + _DUP + bytes(4), "duplicate key"),
    "bad_dtype": (_file({"a": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}, bytes(4)), "unknown dtype"),
    "size_mismatch": (_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, bytes(4)),
                      "takes 8 bytes"),
    "offsets_outside": (_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, bytes(4)),
                        "outside the 4-byte data buffer"),
    "overlap": (_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                       "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8)), "overlaps"),
    "gap": (_file({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, bytes(8)), "gap of 4 bytes"),
    "trailing": (_file({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(12)),
                 "8 bytes after the last tensor"),
    "negative_shape": (_file({"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4)),
                       "not a list of non-negative ints"),
    "bad_offsets": (_file({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0]}}, bytes(4)), "data_offsets"),
    "extra_key": (_file({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}}, bytes(4)),
                  "exactly the keys"),
    "bad_metadata": (_file({"__metadata__": {"a": 1}}), "__metadata__"),
}


@pytest.mark.parametrize("case", sorted(LIES))
def test_lying_headers_are_value_errors_naming_the_file(case, tmp_path):
    data, message = LIES[case]
    p = tmp_path / f"{case}.safetensors"
    p.write_bytes(data)
    with pytest.raises(ValueError, match=message) as e:
        read_safetensors(p)
    assert str(p) in str(e.value)
    m = L.Sequential(L.Linear(1, 1))
    before = m.state_dict()
    with pytest.raises(ValueError):
        load_safetensors(m, p)
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_truncated_file(tmp_path):
    p = tmp_path / "l.safetensors"
    save_safetensors(models.lenet5(), p)
    data = p.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-100])
    with pytest.raises(ValueError, match="outside"):
        read_safetensors(tmp_path / "cut.safetensors")


# ----------------------------------------------------------------------------- against torch
def test_torch_loads_our_file_and_we_load_torchs(tmp_path):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    nn = torch.nn
    ours = randomised(models.cifar_cnn(width=4))
    theirs = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.1),
        nn.Conv2d(4, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.2),
        nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2), nn.Dropout(0.3),
        nn.Flatten(), nn.Linear(16 * 16, 10)).eval()
    theirs.load_state_dict(st.load_file(str(save_safetensors(ours, tmp_path / "ours.safetensors"))))
    x = np.random.default_rng(0).random((2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(theirs(torch.from_numpy(x)).numpy(), ours.forward(x), rtol=1e-4, atol=1e-5)
    # and back: torch's own file (its num_batches_tracked included) into a fresh model of ours
    with torch.no_grad():
        for p in theirs.parameters():
            p.mul_(0.5)
    st.save_file(theirs.state_dict(), str(tmp_path / "theirs.safetensors"))
    back = load_safetensors(models.cifar_cnn(width=4, seed=7), tmp_path / "theirs.safetensors")
    with torch.no_grad():
        np.testing.assert_allclose(back.forward(x), theirs(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)


def test_the_safetensors_package_reads_our_metadata(tmp_path):
    sn = pytest.importorskip("safetensors.numpy")
    pytest.importorskip("safetensors")
    from safetensors import safe_open

    path = save_safetensors(models.lenet5(), tmp_path / "l.safetensors")
    with safe_open(str(path), "np") as f:
        assert "pyconvnet.config" in f.metadata()
    ours, _ = read_safetensors(path)
    theirs = sn.load_file(str(path))
    assert sorted(ours) == sorted(theirs)
    for k in ours:
        np.testing.assert_array_equal(ours[k], theirs[k])
