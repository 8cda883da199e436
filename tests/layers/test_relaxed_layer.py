"""RelaxedConv (the relaxed receptive field paper's layer): parameters, the centre slot,
finite differences, discretisation, config and state."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pyconvnet import functional as F
from pyconvnet import metrics
from pyconvnet.layers import RelaxedConv, check_backward, layer_from_config

from relaxed_helpers import F32, F64


# ============================================================================ layer
def test_layer_params_centre_and_gradients():
    layer = RelaxedConv(2, 3, 6, 6, 4, seed=0, dtype=F64, r_std=0.5)
    assert list(layer.params) == ["R", "weight", "bias"]
    assert layer.params["R"].shape == (6, 6, 4) and layer.params["weight"].shape == (3, 2, 4)
    L = layer.soft_L()
    np.testing.assert_allclose(L.sum(axis=0), 1.0)
    np.testing.assert_array_equal(L[:, :, 0], np.eye(6))  # centre: output j reads input j
    x = np.random.default_rng(1).standard_normal((3, 2, 6))
    assert check_backward(layer, x) < 1e-6
    assert not layer.grads["R"][:, :, 0].any()  # the fixed slot gets no gradient
    layer.arch_grad = False
    layer.backward(np.ones((3, 3, 6)))
    assert not layer.grads["R"].any()


def test_layer_keeps_patches_for_its_backward():
    """A training forward hands P to the backward; the gradients equal the recomputing path's."""
    x = np.random.default_rng(2).standard_normal((4, 2, 6))
    gy = np.random.default_rng(3).standard_normal((4, 3, 6))
    grads, layers = [], []
    for budget in (RelaxedConv.patch_cache_bytes, 0):
        layer = RelaxedConv(2, 3, 6, 6, 4, seed=0, dtype=F64, r_std=0.5)
        layer.patch_cache_bytes = budget
        layer.forward(x, training=True)
        assert (layer._cache[-1] is not None) == (budget > 0)
        gx = layer.backward(gy)
        grads.append([gx] + [layer.grads[k].copy() for k in ("R", "weight", "bias")])
        layers.append(layer)
    for a, b in zip(*grads):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    layers[0].forward(x, training=False)  # inference keeps no patches
    assert layers[0]._cache[-1] is None


def test_layer_discretize_matches_one_hot_relaxed():
    rng = np.random.default_rng(2)
    layer = RelaxedConv(1, 4, 9, 9, 3, seed=3, dtype=F64, r_std=1.0)
    x = rng.standard_normal((5, 1, 3, 3))  # (H, W) input is flattened
    idx = np.argmax(layer.params["R"], axis=0)
    idx[:, 0] = np.arange(9)
    layer.discretize()
    np.testing.assert_array_equal(layer.buffers["index"], idx)
    y = layer.forward(x)
    want = F.relaxed_conv(x.reshape(5, 1, 9), F.index_to_L(idx, 9), layer.params["weight"], layer.params["bias"])
    np.testing.assert_allclose(y, want, rtol=1e-12, atol=1e-12)
    assert check_backward(layer, x) < 1e-6
    assert layer.backward(np.ones_like(y)).shape == x.shape
    assert not layer.grads["R"].any()
    layer.relax()
    assert not layer.discrete


@pytest.mark.parametrize("discrete", [False, True])
def test_layer_config_state_roundtrip(discrete):
    layer = RelaxedConv(2, 3, 8, 4, 2, centre_map=[0, 2, 4, 6], seed=1, dtype=F32, r_std=1.0)
    if discrete:
        layer.discretize()
    cfg = json.loads(json.dumps(layer.config()))
    twin = layer_from_config(cfg)
    twin.load_state_dict(layer.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 2, 8)).astype(F32)
    np.testing.assert_array_equal(twin.forward(x), layer.forward(x))
    assert twin.discrete == discrete and twin.forward(x).dtype == F32


def test_relaxed_state_loads_as_its_discretisation():
    layer = RelaxedConv(1, 2, 6, 6, 3, seed=0, dtype=F64)
    layer.params["R"][2, :, 1] += 5.0  # after construction: the saved index must follow R
    twin = layer_from_config(dict(layer.config(), args=dict(layer.config()["args"], discrete=True)))
    twin.load_state_dict(layer.state_dict())
    want = np.argmax(layer.params["R"], axis=0)
    want[:, 0] = np.arange(6)
    np.testing.assert_array_equal(twin.buffers["index"], want)
    assert (twin.buffers["index"][:, 1] == 2).all()


def test_layer_init_grid_is_a_3x3_neighbourhood():
    layer = RelaxedConv(1, 2, 20, 20, 9, init_grid=(4, 5), seed=0)
    assert layer.soft_L()[:, :, 1:].max(axis=0).min() > 0.85  # most of the mass on the neighbour
    idx = layer.discretize().buffers["index"]
    grid = F.grid_index(4, 5, 3, padding="clamp")
    np.testing.assert_array_equal(idx, grid[:, [4, 0, 1, 2, 3, 5, 6, 7, 8]])  # centre first, then the ring
    assert metrics.field_distance(idx, (4, 5)) < 1.5


def test_layer_bad_arguments():
    with pytest.raises(ValueError, match="centre"):
        RelaxedConv(1, 1, 5, 4, 3)
    with pytest.raises(ValueError, match="init_grid"):
        RelaxedConv(1, 1, 6, 6, 3, init_grid=(2, 2))
    with pytest.raises(ValueError, match="centre_map"):
        RelaxedConv(1, 1, 5, 2, 3, centre_map=[0, 5])
    layer = RelaxedConv(1, 1, 6, 6, 3)
    with pytest.raises(ValueError, match="^x"):
        layer.forward(np.zeros((1, 1, 5), F32))
    with pytest.raises(TypeError, match="^x"):
        layer.forward(np.zeros((1, 1, 6), F64))
