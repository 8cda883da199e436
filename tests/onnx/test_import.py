"""pyconvnet.onnx.load on what torch.onnx.export writes: the CNNs of torch_nets.py, exported live by
the TorchScript exporter (opsets 13 and 17) and, one network, by the dynamo exporter; the other
dynamo exports are fixtures (tests/fixtures/onnx, written by make_fixtures.py with torch 2.13) checked
against the torch outputs stored beside them. Every import must match torch's eval output within
float32 rounding, fine-tune for a step with fit, and survive save_checkpoint / load_checkpoint."""
from __future__ import annotations

import logging
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")

from pyconvnet import layers as L  # noqa: E402
from pyconvnet import losses, optim  # noqa: E402
from pyconvnet import onnx as pox  # noqa: E402
from pyconvnet.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from pyconvnet.training import fit  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "onnx")
# the networks of torch_nets.py (the fixtures need no torch: their torch outputs are stored beside them)
NETS = sorted({f.split("_dynamo")[0] for f in os.listdir(FIXTURES) if f.endswith(".onnx")})


def _torch_nets():
    pytest.importorskip("torch")
    import torch_nets

    return torch_nets
TOL = 1e-5  # of the output's largest magnitude: float32 rounding through a few layers


@pytest.fixture(autouse=True, scope="module")
def _quiet_torch_export():
    logging.disable(logging.WARNING)  # the dynamo exporter logs missing torchvision ops at import
    yield
    logging.disable(logging.NOTSET)


def assert_matches(got, want, what):
    err = float(np.max(np.abs(got - want)))
    scale = max(1.0, float(np.max(np.abs(want))))
    assert got.shape == want.shape, f"{what}: shape {got.shape} != torch {want.shape}"
    assert err <= TOL * scale, f"{what}: max |ours - torch| = {err:.3g} (scale {scale:.3g})"


def torch_out(m, x):
    import torch

    with torch.no_grad():
        return m(torch.from_numpy(x)).numpy()


def fine_tune_and_save(g, x, y, tmp_path, name):
    """One SGD step through fit (classification when y is labels, MSE otherwise), then a checkpoint
    round trip that predicts identically."""
    loss = losses.SoftmaxCrossEntropy() if y.ndim == 1 else losses.MSELoss()
    before = {k: v.copy() for k, v in g.params.items()}
    fit(g, (x, y), epochs=1, batch_size=len(x), optimizer=optim.SGD(g.parameters(), lr=0.01), loss=loss,
        transform=lambda b: b, verbose=False)
    assert any(not np.array_equal(before[k], v) for k, v in g.params.items()), f"{name}: fit changed no weight"
    path = save_checkpoint(tmp_path / f"{name}.npz", g)
    back = load_checkpoint(path).model
    np.testing.assert_array_equal(back.forward(x), g.forward(x))


def _labels(y):
    return np.argmax(y, axis=1) if y.ndim == 2 else y * 0.5


@pytest.mark.parametrize("name", NETS)
def test_torchscript_export_loads_and_matches(name, tmp_path):
    T = _torch_nets()
    m, shape = T.build(name)
    opset = 13 if name in ("lenet", "resnet", "gelu_head") else 17
    path = T.export(m, shape, str(tmp_path / f"{name}.onnx"), dynamo=False, opset=opset)
    g = pox.load(path)
    assert isinstance(g, L.Graph)
    x = np.random.default_rng(2).random((4,) + shape).astype(np.float32)
    want = torch_out(m, x)
    assert_matches(g.forward(x), want, f"{name} (TorchScript, opset {opset})")
    assert_matches(g.forward(x[:1]), want[:1], f"{name} batch 1")  # the batch stays dynamic
    fine_tune_and_save(g, x, _labels(want), tmp_path, name)


@pytest.mark.parametrize("name", NETS)
@pytest.mark.parametrize("opset", [18, 20])
def test_dynamo_fixtures_load_and_match(name, opset, tmp_path):
    """The dynamo exporter's files (external weight data, opset 18 / 20, Gelu as one op at 20)."""
    path = os.path.join(FIXTURES, f"{name}_dynamo_{opset}.onnx")
    with np.load(os.path.join(FIXTURES, "torch_outputs.npz")) as ref:
        x, want = ref[f"{name}.x"], ref[f"{name}.y"]
    g = pox.load(path)
    assert_matches(g.forward(x), want, f"{name} (dynamo fixture, opset {opset})")
    if opset == 20:
        fine_tune_and_save(g, x, _labels(want), tmp_path, name)


def test_dynamo_export_live(tmp_path):
    """One network through the dynamo exporter of the installed torch (slow: ~5 s of torch.export)."""
    T = _torch_nets()
    pytest.importorskip("onnxscript")
    m, shape = T.build("gelu_head", seed=3)
    path = T.export(m, shape, str(tmp_path / "gelu_head.onnx"), dynamo=True, opset=18)
    g = pox.load(path)
    x = np.random.default_rng(4).random((3,) + shape).astype(np.float32)
    assert_matches(g.forward(x), torch_out(m, x), "gelu_head (dynamo, live)")
    kinds = {type(l).__name__ for _, l in g._children()}
    assert "GELU" in kinds and "Erf" not in kinds, f"the GELU expansion was not fused: {sorted(kinds)}"


def test_gelu_expansions_are_fused(tmp_path):
    """The TorchScript exporter writes both GELU forms as Erf / Tanh expansions: each becomes one GELU."""
    T = _torch_nets()
    m, shape = T.build("gelu_head")
    g = pox.load(T.export(m, shape, str(tmp_path / "g.onnx"), dynamo=False, opset=17))
    gelus = [l.approximate for _, l in g._children() if isinstance(l, L.GELU)]
    assert sorted(gelus) == ["none", "tanh"]
    assert not any(isinstance(l, (L.Erf, L.Tanh, L.Elementwise)) for _, l in g._children())
    # the asymmetric zero F.pad before conv2 became the convolution's own (top, bottom, left, right) padding
    pads = [l for _, l in g._children() if isinstance(l, L.Pad2d)]
    assert [p.mode for p in pads] == ["reflect"]
    assert g["conv2"].padding == (1, 0, 0, 1)


def test_names_follow_torch_weights(tmp_path):
    T = _torch_nets()
    m, shape = T.build("lenet")
    g = pox.load(T.export(m, shape, str(tmp_path / "l.onnx"), dynamo=False, opset=17))
    assert {"conv1.weight", "conv2.bias", "fc1.weight", "fc2.bias"} <= set(g.params)
    np.testing.assert_array_equal(g.params["fc1.weight"], m.fc1.weight.detach().numpy())


def test_float64_import(tmp_path):
    T = _torch_nets()
    m, shape = T.build("resnet")
    g = pox.load(T.export(m, shape, str(tmp_path / "r.onnx"), dynamo=False, opset=17), dtype=np.float64)
    x = np.random.default_rng(0).random((2,) + shape)
    assert g.forward(x).dtype == np.float64
    assert_matches(g.forward(x).astype(np.float32), torch_out(m, x.astype(np.float32)), "resnet float64")
