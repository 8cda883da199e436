"""pyconvnet.onnx.export checked by ONNX Runtime: every zoo model and the relaxed receptive-field
nets (both modes), every exportable layer, the dynamic batch, and the errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from pyconvnet import layers as L  # noqa: E402
from pyconvnet import models  # noqa: E402
from pyconvnet import onnx as pox  # noqa: E402

TOL = 1e-5


def run_ort(path, xs):
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    xs = xs if isinstance(xs, list) else [xs]
    return s.run(None, {i.name: x for i, x in zip(s.get_inputs(), xs)})


def assert_close(got, want, what):
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got - want).max())
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    assert err <= TOL * scale, f"{what}: max |onnxruntime - ours| = {err:.3g} (scale {scale:.3g})"


def perturb_stats(model, seed=0):
    """Running statistics far from (0, 1), so that exporting them (not batch statistics) matters."""
    rng = np.random.default_rng(seed)
    for k, b in model.buffers.items():
        if k.endswith("running_mean"):
            b[:] = rng.standard_normal(b.shape)
        elif k.endswith("running_var"):
            b[:] = rng.uniform(0.5, 2.0, b.shape)
    return model


def relaxed_discrete():
    m = models.relaxed_net(8, seed=3)
    m[0]._params["R"][:] = np.random.default_rng(1).standard_normal(m[0]._params["R"].shape)
    m[0].discretize()
    m[0]._buffers["index"][::7, 3] = -1  # zero padding entries
    return m


ZOO = {
    "mlp3": (models.mlp3, (1, 28, 28)),
    "lenet5": (models.lenet5, (1, 28, 28)),
    "keras_cnn": (models.keras_cnn, (1, 28, 28)),
    "cifar_cnn": (models.cifar_cnn, (3, 32, 32)),
    "robust_lenet5": (models.robust_lenet5, (1, 28, 28)),
    "relaxed_net": (lambda: models.relaxed_net(8, r_std=1.0), (1, 8, 8)),
    "relaxed_net_discrete": (relaxed_discrete, (1, 8, 8)),
    "grid_cnn": (lambda: models.grid_cnn(8), (1, 8, 8)),
    "matched_mlp": (lambda: models.matched_mlp(8, 20), (1, 8, 8)),
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_model_runs_in_onnxruntime(name, tmp_path):
    make, shape = ZOO[name]
    m = perturb_stats(make())
    path = pox.export(m, tmp_path / f"{name}.onnx", shape)
    rng = np.random.default_rng(5)
    for batch in (1, 4):  # the batch dimension is dynamic
        x = rng.random((batch,) + shape).astype(np.float32)
        assert_close(run_ort(path, x)[0], m.forward(x, training=False), f"{name} batch {batch}")


def every_layer_graph():
    """A Graph holding every exportable layer at least once (float32, inference)."""
    rng = np.random.default_rng(0)
    g = L.Graph(inputs=["img"])
    add = g.add
    add("pad", L.Pad2d((1, 2, 0, 1), "reflect"), "img")
    add("norm", L.ConstantArith("sub", rng.random((3, 1, 1))), "pad")
    add("conv", L.Conv2d(3, 8, 3, padding=(1, 0, 2, 1), seed=1), "norm")
    add("bn", perturb_stats(L.BatchNorm2d(8)), "conv")
    add("gelu", L.GELU(), "bn")
    add("convg", L.Conv2d(8, 8, 3, padding="same", groups=4, dilation=2, seed=2), "gelu")
    add("gelut", L.GELU("tanh"), "convg")
    add("mp", L.MaxPool2d(3, 2, 1, ceil_mode=False), "gelut")
    add("rep", L.Pad2d(1, "replicate"), "mp")
    add("zero", L.Pad2d((1, 0, 0, 1), value=0.5), "rep")
    add("ap", L.AvgPool2d(2, 1, 1, count_include_pad=False), "zero")
    add("ct", L.ConvTranspose2d(8, 8, 3, stride=2, padding=1, output_padding=1, seed=3), "ap")
    add("r6", L.ReLU6(), "ct")
    add("ht", L.Hardtanh(-0.5, 2.0), "r6")
    add("lrelu", L.LeakyReLU(0.2), "ht")
    add("ps", L.PixelShuffle(2), "lrelu")
    add("pu", L.PixelUnshuffle(2), "ps")
    add("up", L.Upsample(scale_factor=2), "pu")
    add("up2", L.Upsample(size=(9, 7)), "pu")
    add("ad", L.AdaptiveAvgPool2d((3, 7)), "up2")
    add("am", L.AdaptiveMaxPool2d((3, None)), "up2")
    add("cat", L.Concat(), ["ad", "am"])
    add("mul", L.Elementwise("mul"), ["cat", "cat"])
    add("sig", L.Sigmoid(), "mul")
    add("th", L.Tanh(), "sig")
    add("erf", L.Erf(), "th")
    add("gap", L.GlobalAvgPool2d(), "up")
    add("gmp", L.GlobalMaxPool2d(), "up")
    add("sum", L.Add(), ["gap", "gmp"])
    add("id", L.Identity(), "sum")
    add("fl", L.Flatten(), "id")
    add("bn1", perturb_stats(L.BatchNorm1d(8), 1), "fl")
    add("drop", L.Dropout(0.4), "bn1")
    add("fc", L.Linear(8, 6, seed=4), "drop")
    add("re", L.Reshape((2, 3)), "fc")
    add("tr", L.Transpose((0, 2, 1)), "re")
    add("fc3", L.Linear(2, 4, seed=5), "tr")  # a Linear on (N, 3, 2): MatMul + Add
    add("sm", L.Softmax(axis=-1), "fc3")
    add("flat2", L.Flatten(), "erf")
    add("lsm", L.LogSoftmax(), "flat2")
    add("scale", L.ConstantArith("div", rng.uniform(1, 2, (1, 3, 4)), reverse=True), "sm")
    return L.Graph(list((n, g[n], g._nodes[n].inputs) for n in g._nodes), inputs=["img"], outputs=["scale", "lsm"])


@pytest.mark.parametrize("opset", [13, 17, 20])
def test_every_exportable_layer_runs_in_onnxruntime(opset, tmp_path):
    g = every_layer_graph()
    path = pox.export(g, tmp_path / "all.onnx", (3, 6, 5), opset=opset)
    x = np.random.default_rng(1).random((3, 3, 6, 5)).astype(np.float32)
    want = g.forward(x)
    for got, w, name in zip(run_ort(path, x), want, g.output_names):
        assert_close(got, w, f"{name} (opset {opset})")
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert ("Gelu" in ops) == (opset >= 20)


def test_export_then_load_round_trip(tmp_path):
    g = every_layer_graph()
    path = pox.export(g, tmp_path / "all.onnx", (3, 6, 5))
    back = pox.load(path)
    x = np.random.default_rng(2).random((2, 3, 6, 5)).astype(np.float32)
    for got, want in zip(back.forward(x), g.forward(x)):
        assert_close(got, want, "re-imported")


def test_multi_input_graph_and_metadata(tmp_path):
    g = L.Graph([("a", L.Linear(3, 2, seed=0), "u"), ("b", L.Linear(4, 2, seed=1), "v"),
                 ("s", L.Add(), ["a", "b"])], inputs=["u", "v"])
    path = pox.export(g, tmp_path / "two.onnx", [(3,), (4,)], metadata={"dataset": "toy"})
    u, v = np.ones((2, 3), np.float32), np.ones((2, 4), np.float32)
    assert_close(run_ort(path, [u, v])[0], g.forward([u, v]), "two inputs")
    meta = pox.metadata(path)
    assert meta["dataset"] == "toy"
    assert json.loads(meta["pyconvnet.config"]) == g.config()


def test_float64_model_exports_float32(tmp_path):
    m = models.lenet5(dtype=np.float64)
    path = pox.export(m, tmp_path / "l.onnx", (1, 28, 28))
    x = np.random.default_rng(0).random((2, 1, 28, 28))
    assert_close(run_ort(path, x.astype(np.float32))[0], m.forward(x).astype(np.float32), "float64 model")


class Custom(L.Layer):
    def forward(self, x, training=False):
        return x * 2


def test_unexportable_layer_is_named(tmp_path):
    m = L.Sequential(("conv", L.Conv2d(1, 2, 3)), ("mine", Custom()))
    with pytest.raises(ValueError, match=r"layer 'mine' \(Custom\) has no ONNX form; exportable: .*Conv2d"):
        pox.export(m, tmp_path / "c.onnx", (1, 5, 5))
    assert not (tmp_path / "c.onnx").exists()


def test_adaptive_pool_with_unequal_windows_is_refused(tmp_path):
    m = L.Sequential(L.AdaptiveAvgPool2d((3, 3)))
    with pytest.raises(ValueError, match=r"layers.0.*unequal sizes"):
        pox.export(m, tmp_path / "a.onnx", (1, 5, 5))


@pytest.mark.parametrize("kw, exc, match", [
    (dict(opset=12), ValueError, "opset: expected 13"),
    (dict(opset=99), ValueError, "opset: expected 13"),
    (dict(opset="17"), TypeError, "opset: expected an int"),
    (dict(metadata={"a": 1}), TypeError, "metadata"),
])
def test_bad_arguments(kw, exc, match, tmp_path):
    with pytest.raises(exc, match=match):
        pox.export(models.mlp3(), tmp_path / "m.onnx", (1, 28, 28), **kw)


def test_bad_input_shape(tmp_path):
    with pytest.raises(TypeError, match="input_shape"):
        pox.export(models.mlp3(), tmp_path / "m.onnx", "1x28x28")
    with pytest.raises(ValueError, match="input_shape"):
        pox.export(models.mlp3(), tmp_path / "m.onnx", (0, 28, 28))
    with pytest.raises(ValueError, match="expected shape"):
        pox.export(models.lenet5(), tmp_path / "m.onnx", (3, 28, 28))  # the model rejects it
    with pytest.raises(TypeError, match="model"):
        pox.export("lenet5", tmp_path / "m.onnx", (1, 28, 28))


@pytest.mark.parametrize("layer", [L.MaxPool2d(2, ceil_mode=True), L.MaxPool2d(3, 2, 1, ceil_mode=True),
                                   L.AvgPool2d(3, 2, 1, ceil_mode=True), L.AvgPool2d(2, ceil_mode=True,
                                                                                      count_include_pad=False),
                                   L.MaxPool2d((3, 2), (2, 1), (1, 0), dilation=(1, 2))],
                         ids=["max_ceil", "max_pad_ceil", "avg_pad_ceil", "avg_ceil_exclude", "max_dilation"])
def test_pools_with_ceil_mode_and_dilation(layer, tmp_path):
    m = L.Sequential(layer)
    path = pox.export(m, tmp_path / "p.onnx", (2, 7, 9))
    x = np.random.default_rng(3).standard_normal((2, 2, 7, 9)).astype(np.float32)
    assert_close(run_ort(path, x)[0], m.forward(x), type(layer).__name__)
