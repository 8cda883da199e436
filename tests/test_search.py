"""The bilevel receptive-field search (pyconvnet.search; the relaxed receptive field paper's
eq. 4) and the receptive-field pictures and distances."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from pyconvnet import functional as F
from pyconvnet import metrics, plots
from pyconvnet import search as S
from pyconvnet.layers import Flatten, Linear, ReLU, RelaxedConv, Sequential
from pyconvnet.losses import SoftmaxCrossEntropy
from pyconvnet.optim import SGD, Adam

from relaxed_helpers import F64, tiny_data, tiny_model


# ============================================================================ bilevel search
@pytest.mark.parametrize("order", [1, 2])
def test_arch_gradient_matches_finite_differences(order):
    """order 1: d/dR L_val(W, R); order 2: d/dR L_val(W - xi dW L_train(W, R), R) (eq. 4), both
    checked along random directions against central differences of the exact objective."""
    model, loss, xi = tiny_model(), SoftmaxCrossEntropy(), 0.3
    (xt, yt), (xv, yv) = tiny_data()
    weights = S.weight_parameters(model)

    def objective():
        saved = [p.copy() for _, p, _ in weights]
        if order == 2:
            loss.forward(model.forward(xt, True), yt)
            model.backward(loss.backward())
            for _, p, g in weights:
                p -= xi * g
        v = loss.forward(model.forward(xv, True), yv)
        for (_, p, _), s in zip(weights, saved):
            p[...] = s
        return v

    before = [p.copy() for _, p, _ in weights]
    val = S.arch_gradient(model, loss, (xt, yt), (xv, yv), order=order, xi=xi, eps=1e-4)
    (_, Rp, g), = S.arch_parameters(model)
    g = g.copy()  # objective() below overwrites the model's grads
    for (_, p, _), b in zip(weights, before):
        np.testing.assert_array_equal(p, b)  # the weights are restored exactly
    assert abs(val - objective()) < 1e-12
    rng = np.random.default_rng(4)
    for _ in range(3):
        d = rng.standard_normal(Rp.shape)
        h = 1e-5
        Rp += h * d
        up = objective()
        Rp -= 2 * h * d
        dn = objective()
        Rp += h * d
        num, an = (up - dn) / (2 * h), float(np.sum(g * d))
        assert abs(an - num) <= 1e-6 * max(abs(num), 1e-3), (an, num)


@pytest.mark.parametrize("order", [1, 2])
def test_search_reduces_validation_loss_then_retrain(order):
    rng = np.random.default_rng(0)
    # a planted structure: class = sign pattern of x[j] + x[(j + 2) % 8] at two positions
    x = rng.standard_normal((192, 1, 8))
    s = x[:, 0] + np.roll(x[:, 0], -2, axis=1)
    y = (s[:, 0] > 0).astype(np.int64) + 2 * (s[:, 3] > 0)
    model = Sequential(RelaxedConv(1, 4, 8, 8, 2, seed=0, dtype=F64, r_std=0.01), ReLU(), Flatten(),
                       Linear(32, 4, seed=1, dtype=F64))
    w_opt = Adam(S.weight_parameters(model), lr=0.02)
    r_opt = Adam(S.arch_parameters(model), lr=0.05)
    R0 = model.params["layers.0.R"].copy()
    hist = S.search(model, (x[:96], y[:96]), (x[96:], y[96:]), epochs=6, batch_size=32, w_optimizer=w_opt,
                    r_optimizer=r_opt, order=order, transform=lambda a: a, verbose=False)
    assert hist["val_loss"][-1] < hist["val_loss"][0]
    assert not np.array_equal(model.params["layers.0.R"], R0)
    S.discretize(model)
    layer = S.relaxed_layers(model)[0]
    assert layer.discrete
    # retrain W with the receptive field fixed: R is not in the optimizer and gets no gradient
    opt = SGD(S.weight_parameters(model), lr=0.1)
    loss = SoftmaxCrossEntropy()
    first = None
    for _ in range(30):
        v = loss.forward(model.forward(x[:96], True), y[:96])
        first = v if first is None else first
        model.backward(loss.backward())
        opt.step()
    assert v < first
    assert not model.grads["layers.0.R"].any()


def test_search_rejects_r_in_weight_optimizer():
    model = tiny_model()
    with pytest.raises(ValueError, match="w_optimizer"):
        S.BilevelSearch(model, SGD(model.parameters(), lr=0.1), Adam(S.arch_parameters(model)))


# ============================================================================ pictures
def test_plot_and_png(tmp_path):
    idx = F.grid_index(28, 28, 3)[:, [4, 0, 1, 2, 3, 5, 6, 7, 8]]
    p = plots.plot_receptive_fields(idx, (28, 28), str(tmp_path / "fields.png"), title="grid")
    with open(p, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    q = str(tmp_path / "raw.png")
    plots.write_png(q, np.zeros((3, 4, 3), np.uint8))
    with open(q, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24]) == (4, 3)
    # distances in original pixels: a permutation and its inverse cancel
    perm = np.random.default_rng(0).permutation(784)
    inv = np.argsort(perm)
    permuted_idx = np.where(idx >= 0, inv[np.maximum(idx, 0)], -1)[perm]
    assert abs(metrics.field_distance(permuted_idx, (28, 28), perm) - metrics.field_distance(idx, (28, 28))) < 1e-12
    assert 1.0 < metrics.field_distance(idx, (28, 28)) < 1.25
