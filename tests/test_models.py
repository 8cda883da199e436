"""Tests for pyconvnet.models: every zoo network builds for its input geometry, runs
forward/backward, has the parameter count its architecture implies (counted here
from the description, layer by layer), and robust_lenet5's backward matches finite
differences in float64."""
from __future__ import annotations

import numpy as np
import pytest

from pyconvnet import layers as L
from pyconvnet import models


def conv(cin, cout, k, bias=True):
    return cin * cout * k * k + (cout if bias else 0)


def dense(nin, nout):
    return nin * nout + nout


def bn(c):
    return 2 * c  # gamma, beta (running statistics are buffers)


# parameter counts from the architecture descriptions in the docstrings / seed documents
EXPECTED = {
    ("mlp3", (1, 28, 28)): dense(784, 256) + dense(256, 10),
    ("lenet5", (1, 28, 28)): conv(1, 6, 5) + conv(6, 16, 5) + conv(16, 120, 5) + dense(120, 84) + dense(84, 10),
    ("lenet5", (1, 32, 32)): conv(1, 6, 5) + conv(6, 16, 5) + conv(16, 120, 5) + dense(120, 84) + dense(84, 10),
    ("lenet5", (3, 32, 32)): conv(3, 6, 5) + conv(6, 16, 5) + conv(16, 120, 5) + dense(120, 84) + dense(84, 10),
    ("keras_cnn", (1, 28, 28)): conv(1, 32, 3) + conv(32, 64, 3) + dense(64 * 14 * 14, 128) + dense(128, 10),
    ("keras_cnn", (3, 32, 32)): conv(3, 32, 3) + conv(32, 64, 3) + dense(64 * 16 * 16, 128) + dense(128, 10),
    ("cifar_cnn", (3, 32, 32)): (conv(3, 32, 3, False) + bn(32) + conv(32, 32, 3, False) + bn(32)
                                 + conv(32, 64, 3, False) + bn(64) + conv(64, 64, 3, False) + bn(64)
                                 + conv(64, 128, 3, False) + bn(128) + conv(128, 128, 3, False) + bn(128)
                                 + dense(128 * 4 * 4, 10)),
    # C1-S2-C3-S4-C5, C5 upsampled to 28x28 and concatenated with C1 (6 + 120 maps),
    # 1x1 conv to 16, 2x2 pool, F6 84, output 10
    ("robust_lenet5", (1, 28, 28)): (conv(1, 6, 5) + conv(6, 16, 5) + conv(16, 120, 5) + conv(126, 16, 1)
                                     + dense(16 * 14 * 14, 84) + dense(84, 10)),
}

# mlp3 is also numerically pinned: 203530 is the Kyoto Univ. exercise's network with M = 256
PINNED = {"mlp3": 203_530, "lenet5": 61_706, "keras_cnn": 1_625_866, "robust_lenet5": 317_082, "cifar_cnn": 307_946}


def images(n, shape, seed=0, dtype=np.float32):
    return np.random.default_rng(seed).random((n,) + tuple(shape)).astype(dtype)


def test_every_zoo_model_is_covered():
    assert set(models.MODELS) == {name for name, _ in EXPECTED}
    for name, (builder, desc) in models.MODELS.items():
        assert callable(builder) and isinstance(desc, str) and desc


@pytest.mark.parametrize("name, shape", list(EXPECTED))
def test_build_forward_backward_and_param_count(name, shape):
    model = models.build(name, shape, classes=10, seed=0)
    assert model.num_params() == EXPECTED[name, shape]
    assert sum(p.size for p in model.params.values()) == EXPECTED[name, shape]
    x = images(3, shape)
    y = model.forward(x, training=True)
    assert y.shape == (3, 10) and y.dtype == np.float32 and np.isfinite(y).all()
    gx = model.backward(np.ones_like(y) / 3)
    assert gx.shape == x.shape
    grads = model.grads
    assert grads.keys() == model.params.keys()
    for k, g in grads.items():
        assert g.shape == model.params[k].shape and np.isfinite(g).all(), k
    # the last layer's weight gets a non-zero gradient for a non-trivial output gradient
    y = model.forward(x, training=True)
    model.backward(np.random.default_rng(1).standard_normal(y.shape).astype(np.float32))
    assert any(np.any(g != 0) for g in model.grads.values())
    # inference: (N, 10) for one image too
    assert model.forward(x[:1], training=False).shape == (1, 10)


@pytest.mark.parametrize("name", list(PINNED))
def test_pinned_parameter_counts(name):
    shape = (3, 32, 32) if name == "cifar_cnn" else (1, 28, 28)
    assert models.build(name, shape).num_params() == PINNED[name]
    assert EXPECTED[name, shape] == PINNED[name]


def test_classes_argument():
    for name, shape in [("mlp3", (1, 28, 28)), ("lenet5", (1, 28, 28)), ("robust_lenet5", (1, 28, 28)),
                        ("cifar_cnn", (3, 32, 32)), ("keras_cnn", (1, 28, 28))]:
        assert models.build(name, shape, classes=3).forward(images(2, shape)).shape == (2, 3)


def test_mlp3_hidden_width():
    m = models.mlp3(hidden=32)
    assert m.num_params() == dense(784, 32) + dense(32, 10)


def test_seed_reproducible_and_distinct():
    for name in models.MODELS:
        shape = (3, 32, 32) if name == "cifar_cnn" else (1, 28, 28)
        a, b, c = (models.build(name, shape, seed=s) for s in (0, 0, 1))
        sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
        assert all(np.array_equal(sa[k], sb[k]) for k in sa), name
        assert any(not np.array_equal(sa[k], sc[k]) for k in sa if k in a.params), name


def test_lenet5_28_vs_32():
    """28x28 digits: C1 pads by 2 (= LeNet's 32x32 input); 32x32 input: no padding.
    Same seed -> same weights, and the 28x28 net on an image equals the 32x32 net on
    that image zero-padded by 2."""
    m28, m32 = models.build("lenet5", (1, 28, 28)), models.build("lenet5", (1, 32, 32))
    c28, c32 = m28.config()["args"]["layers"][0]["args"], m32.config()["args"]["layers"][0]["args"]
    assert c28["padding"] == [2, 2] and c32["padding"] == [0, 0]
    s28, s32 = m28.state_dict(), m32.state_dict()
    assert all(np.array_equal(s28[k], s32[k]) for k in s28)
    x = images(4, (1, 28, 28))
    xp = np.pad(x, ((0, 0), (0, 0), (2, 2), (2, 2)))
    np.testing.assert_allclose(m28.forward(x), m32.forward(xp), rtol=1e-5, atol=1e-6)
    # C1 output is 28x28 in both cases, C5 output 1x1
    assert m28[0].forward(x).shape == (4, 6, 28, 28) and m32[0].forward(xp).shape == (4, 6, 28, 28)
    h = x
    for layer in list(m28)[:8]:
        h = layer.forward(h)
    assert h.shape == (4, 120, 1, 1)


def test_lenet5_colour_input():
    m = models.build("lenet5", (3, 32, 32))
    assert m.forward(images(2, (3, 32, 32))).shape == (2, 10)


def test_keras_cnn_dropout_flag():
    with_d = models.keras_cnn(dropout=True)
    without = models.keras_cnn(dropout=False)
    kinds = [type(l).__name__ for l in with_d]
    assert kinds.count("Dropout") == 2 and "Dropout" not in [type(l).__name__ for l in without]
    assert with_d.num_params() == without.num_params()
    x = images(2, (1, 28, 28))
    np.testing.assert_array_equal(with_d.forward(x, training=False), without.forward(x, training=False))


def test_build_rejects_wrong_geometry_and_names():
    with pytest.raises(ValueError, match="cifar_cnn expects 32x32"):
        models.build("cifar_cnn", (1, 28, 28))
    with pytest.raises(ValueError, match="robust_lenet5 expects 28x28"):
        models.build("robust_lenet5", (3, 32, 32))
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        models.build("resnet", (1, 28, 28))


def test_configs_rebuild_equal_architectures():
    for name in models.MODELS:
        shape = (3, 32, 32) if name == "cifar_cnn" else (1, 28, 28)
        m = models.build(name, shape)
        r = L.layer_from_config(m.config())
        assert r.config() == m.config()
        r.load_state_dict(m.state_dict())
        x = images(2, shape)
        np.testing.assert_array_equal(r.forward(x), m.forward(x))


def test_robust_lenet5_structure():
    g = models.robust_lenet5()
    x = images(2, (1, 28, 28))
    assert g["c1"].forward(x).shape == (2, 6, 28, 28)
    cfg = g.config()["args"]
    nodes = {n["name"]: n for n in cfg["nodes"]}
    assert nodes["cat"]["inputs"] == ["r1", "up"]
    assert nodes["pw"]["layer"]["args"]["in_channels"] == 126
    assert cfg["outputs"] == ["out"]


def test_robust_lenet5_gradient_check_float64():
    """Whole-network finite-difference check: small arrays element by element, large
    ones along random directions (check_backward), on 2 images in float64."""
    model = models.robust_lenet5(seed=3).astype(np.float64)
    for p in model.params.values():
        assert p.dtype == np.float64
    # biases are zero-initialised: give them values so their gradients are exercised
    rng = np.random.default_rng(0)
    for k, p in model.params.items():
        if k.endswith("bias"):
            p[...] = rng.uniform(0.05, 0.2, p.shape)
    x = images(2, (1, 28, 28), seed=5, dtype=np.float64)
    worst = L.check_backward(model, x, eps=1e-6, tol=1e-5, directions=2)
    assert worst < 1e-5


def test_float64_training_step_runs():
    from pyconvnet import losses, optim

    model = models.build("lenet5", (1, 28, 28)).astype(np.float64)
    opt = optim.SGD(model.parameters(), lr=0.1)
    loss = losses.SoftmaxCrossEntropy()
    x = images(4, (1, 28, 28), dtype=np.float64)
    before = {k: v.copy() for k, v in model.params.items()}
    loss.forward(model.forward(x, training=True), np.array([0, 1, 2, 3]))
    model.backward(loss.backward())
    opt.step()
    assert any(not np.array_equal(before[k], v) for k, v in model.params.items())
    assert all(v.dtype == np.float64 for v in model.params.values())
