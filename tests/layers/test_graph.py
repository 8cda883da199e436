"""Tests for the containers: Sequential and Graph (fan-out, Concat/Add skips, several
inputs/outputs, the robust LeNet-5 of the LeNet-5 translation report), their parameter naming,
state_dict/config round trips and errors. Gradients are checked against finite
differences in float64."""
from __future__ import annotations

import json

import numpy as np
import pytest

import pyconvnet
from pyconvnet import layers as L
from pyconvnet.layers import Graph, Sequential, check_backward, layer_from_config

F64 = np.float64


# Finite differences run thousands of tiny kernels: single-threaded (see conftest.one_thread).
pytestmark = pytest.mark.usefixtures("one_thread")


def small_cnn(dtype=F64, seed=0):
    rng = np.random.default_rng(seed)
    return Sequential(
        L.Conv2d(2, 4, 3, padding=1, rng=rng, dtype=dtype), L.BatchNorm2d(4, dtype=dtype), L.Tanh(),
        L.MaxPool2d(2), L.Flatten(), L.Linear(4 * 3 * 3, 5, rng=rng, dtype=dtype), L.Sigmoid(),
        L.Linear(5, 3, rng=rng, dtype=dtype))


def unet_like(dtype=F64, seed=0, merge="concat"):
    """x -> enc (conv) -> pool -> mid (conv) -> upsample -> [concat with enc | add to enc] -> conv -> out."""
    rng = np.random.default_rng(seed)
    g = Graph(inputs="x", outputs="out")
    g.add("enc", L.Conv2d(2, 3, 3, padding=1, rng=rng, dtype=dtype), "x")
    g.add("enc_act", L.Tanh(), "enc")
    g.add("down", L.AvgPool2d(2), "enc_act")
    g.add("mid", L.Conv2d(3, 3, 3, padding=1, rng=rng, dtype=dtype), "down")
    g.add("up", L.Upsample(scale_factor=2), "mid")
    if merge == "concat":
        g.add("skip", L.Concat(), ["up", "enc_act"])
        g.add("out", L.Conv2d(6, 2, 1, rng=rng, dtype=dtype), "skip")
    else:
        g.add("skip", L.Add(), ["up", "enc_act"])
        g.add("out", L.Conv2d(3, 2, 1, rng=rng, dtype=dtype), "skip")
    return g


def robust_lenet5(size=28, c1=6, c3=16, c5=120, pw=6, hidden=84, classes=10, rng=None, dtype=np.float32):
    """The robust LeNet-5 of the LeNet-5 translation report: LeNet-5's C5 maps (1x1) are upsampled to the C1 size,
    concatenated with the C1 maps, mixed by a 1x1 (pointwise) conv, then fully connected."""
    rng = np.random.default_rng(rng)
    s2 = size // 2
    s4 = (s2 - 4) // 2
    g = Graph(inputs="image", outputs="logits")
    g.add("c1", L.Conv2d(1, c1, 5, padding=2, rng=rng, dtype=dtype), "image")
    g.add("c1_act", L.ReLU(), "c1")
    g.add("s2", L.MaxPool2d(2), "c1_act")
    g.add("c3", L.Conv2d(c1, c3, 5, rng=rng, dtype=dtype), "s2")
    g.add("c3_act", L.ReLU(), "c3")
    g.add("s4", L.MaxPool2d(2), "c3_act")
    g.add("c5", L.Conv2d(c3, c5, s4, rng=rng, dtype=dtype), "s4")
    g.add("c5_act", L.ReLU(), "c5")
    g.add("up", L.Upsample(size=(size, size)), "c5_act")
    g.add("cat", L.Concat(), ["up", "c1_act"])
    g.add("pw", L.Conv2d(c5 + c1, pw, 1, rng=rng, dtype=dtype), "cat")
    g.add("pw_act", L.ReLU(), "pw")
    g.add("flat", L.Flatten(), "pw_act")
    g.add("f6", L.Linear(pw * size * size, hidden, rng=rng, dtype=dtype), "flat")
    g.add("f6_act", L.ReLU(), "f6")
    g.add("logits", L.Linear(hidden, classes, rng=rng, dtype=dtype), "f6_act")
    return g


# ------------------------------------------------------------------ Sequential
def test_sequential_backward_matches_finite_differences():
    x = np.random.default_rng(1).standard_normal((3, 2, 6, 6))
    check_backward(small_cnn(), x, training=True)
    check_backward(small_cnn(), x, training=False)


def test_sequential_naming_and_access():
    m = small_cnn(np.float32)
    assert list(m.params)[:4] == ["layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.1.bias"]
    assert list(m.buffers) == ["layers.1.running_mean", "layers.1.running_var", "layers.1.num_batches_tracked"]
    assert list(m.grads) == list(m.params)
    assert m.params["layers.0.weight"] is m[0].params["weight"]  # the same arrays, not copies
    assert len(m) == 8 and isinstance(m[3], L.MaxPool2d)
    named = Sequential(("conv", L.Conv2d(1, 2, 3)), ("act", L.ReLU()), ("fc", L.Linear(2, 2)))
    assert list(named.params) == ["conv.weight", "conv.bias", "fc.weight", "fc.bias"]
    assert named["fc"] is named[2]
    assert list(Sequential(L.Linear(2, 2), names=["fc"]).params) == ["fc.weight", "fc.bias"]
    assert m.num_params() == sum(p.size for p in m.params.values())


def test_sequential_passes_the_training_flag():
    m = Sequential(L.Linear(4, 4, seed=0), L.BatchNorm1d(4), L.Dropout(0.5, seed=0))
    x = np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32)
    y_eval = m.forward(x)
    assert int(m[1].buffers["num_batches_tracked"]) == 0
    np.testing.assert_array_equal(m.forward(x, training=False), y_eval)  # deterministic at test time
    y_train = m.forward(x, training=True)
    assert int(m[1].buffers["num_batches_tracked"]) == 1
    assert (y_train == 0).any() and not np.allclose(y_train, y_eval)


def test_sequential_round_trip_bit_for_bit(tmp_path):
    m = small_cnn(np.float32, seed=3)
    x = np.random.default_rng(0).standard_normal((4, 2, 6, 6)).astype(np.float32)
    m.forward(x, training=True)  # update the running statistics
    path = tmp_path / "ckpt.npz"
    np.savez(path, **m.state_dict())
    cfg = json.dumps(m.config())
    clone = layer_from_config(cfg)
    with np.load(path) as data:
        clone.load_state_dict(data)
    np.testing.assert_array_equal(clone.forward(x), m.forward(x))
    assert clone.config() == m.config()
    named = Sequential(("a", L.Linear(2, 3, seed=1)), ("b", L.ReLU()))
    assert list(layer_from_config(named.config()).params) == ["a.weight", "a.bias"]


def test_sequential_zero_grad_and_float32_training_step():
    m = small_cnn(np.float32)
    x = np.random.default_rng(0).standard_normal((4, 2, 6, 6)).astype(np.float32)
    y = m.forward(x, training=True)
    gx = m.backward(np.ones_like(y))
    assert gx.shape == x.shape and gx.dtype == np.float32
    assert all(g.any() for g in m.grads.values())
    m.zero_grad()
    assert not any(g.any() for g in m.grads.values())


def test_astype_on_a_container():
    m = small_cnn(np.float32).astype(F64)
    assert all(p.dtype == F64 for p in m.params.values())
    m.forward(np.zeros((2, 2, 6, 6)))


def test_sequential_errors():
    lin = L.Linear(2, 2)
    with pytest.raises(ValueError, match="used twice"):
        Sequential(lin, L.ReLU(), lin)
    with pytest.raises(TypeError, match=r"^layers\[1\]: expected a Layer"):
        Sequential(L.ReLU(), "relu")
    with pytest.raises(ValueError, match="^names: duplicates"):
        Sequential(L.ReLU(), L.ReLU(), names=["a", "a"])
    with pytest.raises(ValueError, match="^names: expected a non-empty str without '.'"):
        Sequential(L.ReLU(), names=["a.b"])
    with pytest.raises(ValueError, match="^names: expected 2 names"):
        Sequential(L.ReLU(), L.ReLU(), names=["a"])
    with pytest.raises(RuntimeError, match="before forward"):
        Sequential(L.Linear(2, 2)).backward(np.zeros((1, 2), np.float32))


# ------------------------------------------------------------------ Graph
@pytest.mark.parametrize("merge", ["concat", "add"])
def test_unet_like_skip_backward_matches_finite_differences(merge):
    x = np.random.default_rng(2).standard_normal((2, 2, 4, 4))
    check_backward(unet_like(merge=merge), x)


def test_fan_out_gradients_accumulate():
    """x feeds three consumers, h two (one of them twice, via one Concat)."""
    rng = np.random.default_rng(0)
    g = Graph(inputs="x", outputs="out")
    g.add("h", L.Linear(3, 3, rng=rng, dtype=F64), "x")
    g.add("a", L.Tanh(), "h")
    g.add("b", L.Linear(3, 3, rng=rng, dtype=F64), "x")
    g.add("sum", L.Add(), ["a", "b", "x"])
    g.add("cat", L.Concat(), ["sum", "h", "h"])
    g.add("out", L.Linear(9, 2, rng=rng, dtype=F64), "cat")
    check_backward(g, rng.standard_normal((4, 3)), max_elements=100)


def test_graph_matches_equivalent_sequential_and_any_insertion_order():
    seq = small_cnn(seed=4)
    x = np.random.default_rng(0).standard_normal((3, 2, 6, 6))
    names = [f"n{i}" for i in range(len(seq))]
    nodes = [(n, layer_from_config(l.config()), "x" if i == 0 else names[i - 1]) for i, (n, l) in
             enumerate(zip(names, seq))]
    g = Graph(list(reversed(nodes)), inputs="x", outputs=names[-1])  # added in reverse: order is computed
    for (n, layer, _), src in zip(nodes, seq):
        layer.load_state_dict(src.state_dict())
    np.testing.assert_array_equal(g.forward(x, training=True), seq.forward(x, training=True))
    dout = np.random.default_rng(1).standard_normal((3, 3))
    np.testing.assert_allclose(g.backward(dout), seq.backward(dout), rtol=1e-13)
    for i, n in enumerate(names):
        for k, v in seq[i].grads.items():
            np.testing.assert_allclose(g.grads[f"{n}.{k}"], v, rtol=1e-13)


def test_two_inputs_two_outputs():
    rng = np.random.default_rng(0)
    g = Graph(inputs=["left", "right"], outputs=["joint", "aux"])
    g.add("fl", L.Linear(3, 4, rng=rng, dtype=F64), "left")
    g.add("fr", L.Linear(5, 4, rng=rng, dtype=F64), "right")
    g.add("joint", L.Add(), ["fl", "fr"])
    g.add("aux", L.Sigmoid(), "fl")
    xl, xr = rng.standard_normal((2, 3)), rng.standard_normal((2, 5))
    check_backward(g, [xl, xr])
    check_backward(g, {"left": xl, "right": xr})
    out = g.forward({"right": xr, "left": xl})
    assert isinstance(out, list) and [o.shape for o in out] == [(2, 4), (2, 4)]
    # None: no gradient for that output; 'right' only reaches 'joint'
    gl, gr = g.backward([None, np.ones((2, 4))])
    assert not gr.any() and gr.shape == xr.shape and gl.any()
    assert not g.grads["fr.weight"].any()  # overwritten with zeros: nothing flowed back through fr


def test_unused_input_and_dead_node():
    rng = np.random.default_rng(0)
    g = Graph(inputs=["x", "unused"], outputs="y")
    g.add("y", L.Linear(2, 2, rng=rng, dtype=F64), "x")
    g.add("dead", L.Linear(2, 2, rng=rng, dtype=F64), "x")  # not an ancestor of the output: never run
    g.forward([np.ones((3, 2)), np.ones((1, 7))])
    gx, gu = g.backward(np.ones((3, 2)))
    assert gx.shape == (3, 2) and gu.shape == (1, 7) and not gu.any()
    assert "dead.weight" in g.params


def test_output_can_be_an_input_and_inner_node():
    g = Graph(inputs="x", outputs=["x", "h", "y"])
    g.add("h", L.Tanh(), "x")
    g.add("y", L.Tanh(), "h")
    x = np.random.default_rng(0).standard_normal((2, 3))
    check_backward(g, x)


def test_graph_naming_state_dict_and_config_round_trip():
    g = robust_lenet5(size=12, c1=2, c3=3, c5=4, pw=2, hidden=5, classes=3, rng=0)
    assert "c1.weight" in g.params and "pw.bias" in g.params and "logits.weight" in g.params
    x = np.random.default_rng(0).standard_normal((2, 1, 12, 12)).astype(np.float32)
    cfg = json.loads(json.dumps(g.config()))
    assert cfg["class"] == "Graph" and cfg["args"]["inputs"] == ["image"] and cfg["args"]["outputs"] == ["logits"]
    clone = layer_from_config(cfg)
    clone.load_state_dict(g.state_dict())
    np.testing.assert_array_equal(clone.forward(x), g.forward(x))


def test_nested_containers():
    inner = Sequential(L.Linear(3, 3, seed=0, dtype=F64), L.Tanh())
    g = Graph(inputs="x", outputs="out")
    g.add("block", inner, "x")
    g.add("res", L.Add(), ["block", "x"])
    g.add("out", Sequential(("fc", L.Linear(3, 2, seed=1, dtype=F64))), "res")
    assert list(g.params) == ["block.layers.0.weight", "block.layers.0.bias", "out.fc.weight", "out.fc.bias"]
    check_backward(g, np.random.default_rng(0).standard_normal((2, 3)))
    clone = layer_from_config(g.config())
    clone.load_state_dict(g.state_dict())
    x = np.random.default_rng(1).standard_normal((4, 3))
    np.testing.assert_array_equal(clone.forward(x), g.forward(x))


def test_robust_lenet5_seed000_shapes_and_gradients():
    g = robust_lenet5(rng=0)
    x = np.random.default_rng(0).random((2, 1, 28, 28)).astype(np.float32)
    y = g.forward(x, training=True)
    assert y.shape == (2, 10) and y.dtype == np.float32
    gx = g.backward(np.ones_like(y))
    assert gx.shape == x.shape
    assert g.params["pw.weight"].shape == (6, 126, 1, 1)  # 120 upsampled C5 maps + 6 C1 maps, pointwise
    assert g.params["c5.weight"].shape == (120, 16, 5, 5)
    # a small float64 copy for finite differences
    small = robust_lenet5(size=12, c1=2, c3=2, c5=3, pw=2, hidden=4, classes=3, rng=1, dtype=F64)
    check_backward(small, np.random.default_rng(1).random((2, 1, 12, 12)))


def test_graph_errors():
    relu = L.ReLU()
    g = Graph(inputs="x", outputs="b")
    g.add("a", relu, "x")
    with pytest.raises(ValueError, match="used twice"):
        g.add("b", relu, "a")
    with pytest.raises(ValueError, match="already a node or an input"):
        g.add("a", L.ReLU(), "x")
    with pytest.raises(ValueError, match="already a node or an input"):
        g.add("x", L.ReLU(), "a")
    with pytest.raises(ValueError, match="takes one input"):
        g.add("b", L.ReLU(), ["a", "x"])
    with pytest.raises(ValueError, match="^name: expected a non-empty str"):
        g.add("b.c", L.ReLU(), "a")
    g.add("b", L.Tanh(), "missing")
    with pytest.raises(ValueError, match="reads 'missing', which is neither a node nor an input"):
        g.forward(np.zeros(2))
    cyc = Graph([("p", L.ReLU(), "q"), ("q", L.ReLU(), "p")], inputs="x", outputs="p")
    with pytest.raises(ValueError, match="cycle p -> q -> p"):
        cyc.forward(np.zeros(2))
    with pytest.raises(ValueError, match="neither a node nor an input"):
        Graph([("a", L.ReLU(), "x")], outputs="nope").forward(np.zeros(2))
    two = Graph([("s", L.Add(), ["a", "b"])], inputs=["a", "b"])
    with pytest.raises(ValueError, match="^x: this Graph takes 2 inputs"):
        two.forward(np.zeros(2))
    with pytest.raises(ValueError, match="^x: expected 2 input arrays"):
        two.forward([np.zeros(2)])
    with pytest.raises(ValueError, match=r"^x: expected the inputs \['a', 'b'\]"):
        two.forward({"a": np.zeros(2), "c": np.zeros(2)})
    two.forward([np.zeros(2), np.zeros(2)])
    with pytest.raises(ValueError, match=r"^grad_y: expected 1 gradient"):
        two.backward([np.zeros(2), np.zeros(2)])
    with pytest.raises(RuntimeError, match="before forward"):
        Graph([("a", L.ReLU(), "x")]).backward(np.zeros(2))
    with pytest.raises(TypeError, match="^nodes: expected a list of"):
        Graph("x")
    with pytest.raises(TypeError, match=r"^nodes\[0\]: expected a \(name, layer, inputs\) triple"):
        Graph([("a", L.ReLU())])
    with pytest.raises(ValueError, match="^cfg: unknown layer class"):
        layer_from_config({"class": "Graph", "args": {"inputs": ["x"], "outputs": ["a"], "nodes": [
            {"name": "a", "layer": {"class": "Bogus", "args": {}}, "inputs": ["x"]}]}})


def test_threads_do_not_change_results():
    x = np.random.default_rng(0).standard_normal((4, 2, 6, 6))
    dout = np.random.default_rng(1).standard_normal((4, 3))
    results = []
    for n in (2, 1):
        pyconvnet.set_num_threads(n)
        m = small_cnn(seed=2)
        y = m.forward(x, training=True)
        results.append((y, m.backward(dout), m.grads))
    (y2, g2, p2), (y1, g1, p1) = results
    np.testing.assert_allclose(y2, y1, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(g2, g1, rtol=1e-12, atol=1e-14)
    for k in p1:
        np.testing.assert_allclose(p2[k], p1[k], rtol=1e-12, atol=1e-14)


def test_summary_shapes_counts_and_cleanup():
    """summary(): one row per child with its output shape and parameter count, the totals,
    and no trace left on the layers (their forward is the class's again)."""
    from pyconvnet import models

    net = models.lenet5()
    text = net.summary((1, 28, 28), print_fn=None)
    assert "layers.3 (Conv2d)" in text and "(N, 16, 10, 10)" in text and "2,416" in text
    assert f"total parameters: {net.num_params():,}" in text
    assert all("forward" not in vars(layer) for layer in net)
    g = models.robust_lenet5()
    gt = g.summary((1, 28, 28), print_fn=None)
    assert "cat (Concat) <- r1, up" in gt and "(N, 126, 28, 28)" in gt
    lines = []
    L.Conv2d(3, 4, 3).summary((3, 8, 8), print_fn=lines.append)
    assert "(N, 4, 6, 6)" in lines[0]
    assert "output shape" not in net.summary(print_fn=None)  # no input shape: counts only
    with pytest.raises(TypeError, match="input_shape"):
        net.summary(("a", 2), print_fn=None)
    with pytest.raises(ValueError):
        net.summary((3, 28, 28), print_fn=None)  # wrong channels: the layers' own error
    assert all("forward" not in vars(layer) for layer in net)
