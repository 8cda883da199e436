"""The LSTM layer and the Stack layer, alone and inside the containers the arithmetic-sequence
experiment needs (two CNN branches -> Stack -> LSTM in a Graph; LSTM -> Linear in a Sequential):
finite differences in float64, torch.nn.LSTM by parameter name, config / state_dict round trips,
summaries, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest

from pyconvnet import functional as F
from pyconvnet import layers as L
from pyconvnet import models
from pyconvnet.layers import Graph, Sequential, check_backward, layer_from_config

F32, F64 = np.float32, np.float64

pytestmark = pytest.mark.usefixtures("one_thread")


# ============================================================================ LSTM
def test_lstm_parameters_follow_torch_names_and_shapes():
    m = L.LSTM(5, 3, seed=0)
    assert {k: v.shape for k, v in m.params.items()} == {
        "weight_ih": (12, 5), "weight_hh": (12, 3), "bias_ih": (12,), "bias_hh": (12,)}
    assert all(v.dtype == F32 for v in m.params.values())
    assert all(np.abs(v).max() <= 1 / np.sqrt(3) for v in m.params.values())  # torch's U(-1/sqrt(H), 1/sqrt(H))
    assert set(L.LSTM(5, 3, bias=False, seed=0).params) == {"weight_ih", "weight_hh"}
    np.testing.assert_array_equal(L.LSTM(5, 3, seed=4).params["weight_hh"], L.LSTM(5, 3, seed=4).params["weight_hh"])


@pytest.mark.parametrize("seq", [True, False])
def test_lstm_layer_output_and_backward(seq):
    rng = np.random.default_rng(0)
    m = L.LSTM(3, 4, return_sequences=seq, seed=1, dtype=F64)
    x = rng.standard_normal((2, 5, 3))
    y = m.forward(x)
    assert y.shape == ((2, 5, 4) if seq else (2, 4))
    p = m.params
    np.testing.assert_array_equal(y, F.lstm(x, p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"],
                                            return_sequences=seq))
    check_backward(m, x)


def test_lstm_layer_gradients_land_in_its_buffers_and_skip_input_grad():
    rng = np.random.default_rng(1)
    m = L.LSTM(3, 2, seed=2, dtype=F64)
    before = {k: id(v) for k, v in m.grads.items()}
    m.forward(rng.standard_normal((4, 3, 3)))
    gx = m.backward(rng.standard_normal((4, 2)))
    assert gx.shape == (4, 3, 3)
    assert {k: id(v) for k, v in m.grads.items()} == before  # updated in place: optimizers hold them
    assert np.abs(m.grads["weight_hh"]).sum() > 0
    np.testing.assert_array_equal(m.grads["bias_ih"], m.grads["bias_hh"])
    m.need_input_grad = False
    m.forward(rng.standard_normal((4, 3, 3)))
    assert m.backward(rng.standard_normal((4, 2))) is None


def test_lstm_state_dict_moves_to_torch_by_name():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    m = L.LSTM(4, 6, return_sequences=True, seed=3)
    t = torch.nn.LSTM(4, 6, batch_first=True)
    t.load_state_dict({f"{k}_l0": torch.from_numpy(v) for k, v in m.state_dict().items()})
    x = rng.standard_normal((3, 5, 4)).astype(F32)
    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    out, _ = t(xt)
    np.testing.assert_allclose(m.forward(x), out.detach().numpy(), rtol=1e-5, atol=1e-6)
    g = rng.standard_normal((3, 5, 6)).astype(F32)
    out.backward(torch.from_numpy(g))
    np.testing.assert_allclose(m.backward(g), xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    for k, v in m.grads.items():
        np.testing.assert_allclose(v, getattr(t, f"{k}_l0").grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=k)
    # and back: torch's weights loaded by name
    m2 = L.LSTM(4, 6, return_sequences=True, seed=9)
    m2.load_state_dict({k[:-3]: v.detach().numpy() for k, v in t.state_dict().items()})
    np.testing.assert_array_equal(m2.forward(x), m.forward(x))


def test_lstm_config_round_trip_and_float64():
    m = L.LSTM(3, 2, return_sequences=True, bias=False, seed=5)
    cfg = json.loads(json.dumps(m.config()))
    m2 = layer_from_config(cfg)
    assert isinstance(m2, L.LSTM) and m2.return_sequences and not m2.bias
    m2.load_state_dict(m.state_dict())
    x = np.random.default_rng(0).standard_normal((2, 3, 3)).astype(F32)
    np.testing.assert_array_equal(m.forward(x), m2.forward(x))
    m.astype(F64)
    assert m.forward(x.astype(F64)).dtype == F64


def test_lstm_layer_errors():
    m = L.LSTM(3, 2, seed=0)
    with pytest.raises(ValueError, match="input_size"):
        L.LSTM(0, 2)
    with pytest.raises(TypeError, match="x: expected dtype float32"):
        m.forward(np.zeros((2, 3, 3)))
    with pytest.raises(ValueError, match=r"weight_ih: expected shape \(8, 4\)"):
        m.forward(np.zeros((2, 3, 4), F32))
    with pytest.raises(RuntimeError, match="before forward"):
        L.LSTM(3, 2).backward(np.zeros((2, 2), F32))
    m.forward(np.zeros((2, 3, 3), F32))
    with pytest.raises(ValueError, match=r"grad_y: expected shape \(2, 2\)"):
        m.backward(np.zeros((2, 3, 2), F32))


# ============================================================================ Stack
def test_stack_forward_backward():
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    s = L.Stack()
    y = s.forward([a, b])
    np.testing.assert_array_equal(y, np.stack([a, b], axis=1))
    g = rng.standard_normal(y.shape)
    ga, gb = s.backward(g)
    np.testing.assert_array_equal(ga, g[:, 0])
    np.testing.assert_array_equal(gb, g[:, 1])
    check_backward(L.Stack(axis=-1), [a, b])
    assert L.Stack(axis=0).forward([a, b]).shape == (2, 4, 3)
    assert layer_from_config(L.Stack(axis=2).config()).axis == 2


def test_stack_errors():
    with pytest.raises(ValueError, match=r"xs\[1\]: expected shape \(4, 3\)"):
        L.Stack().forward([np.zeros((4, 3)), np.zeros((4, 2))])
    with pytest.raises(ValueError, match="axis: 3 is out of range"):
        L.Stack(axis=3).forward([np.zeros((4, 3)), np.zeros((4, 3))])
    with pytest.raises(TypeError, match="Stack takes a list"):
        L.Stack().forward(np.zeros((4, 3)))


# ============================================================================ in the containers
def two_branch_graph(dtype=F64):
    """The model-2 shape in miniature: two conv branches -> softmax -> Stack -> LSTM -> Linear."""
    rng = np.random.default_rng(0)

    def branch():
        return Sequential(L.Conv2d(1, 2, 3, rng=rng, dtype=dtype), L.Tanh(), L.Flatten(),
                          L.Linear(2 * 2 * 2, 3, rng=rng, dtype=dtype))

    return Graph([("b1", branch(), "a"), ("b2", branch(), "b"), ("p1", L.Softmax(), "b1"),
                  ("p2", L.Softmax(), "b2"), ("seq", L.Stack(), ["p1", "p2"]),
                  ("rnn", L.LSTM(3, 4, rng=rng, dtype=dtype), "seq"),
                  ("fc", L.Linear(4, 5, rng=rng, dtype=dtype), "rnn")], inputs=["a", "b"], outputs="fc")


def test_graph_of_branches_stack_lstm_gradients():
    g = two_branch_graph()
    rng = np.random.default_rng(1)
    x = [rng.standard_normal((2, 1, 4, 4)), rng.standard_normal((2, 1, 4, 4))]
    assert g.forward(x).shape == (2, 5)
    check_backward(g, x)
    # the whole graph rebuilt from its config computes the same thing
    g2 = layer_from_config(json.loads(json.dumps(g.config())))
    g2.load_state_dict(g.state_dict())
    np.testing.assert_array_equal(g2.forward(x), g.forward(x))


def test_sequential_lstm_linear_gradients_and_summary():
    rng = np.random.default_rng(2)
    m = Sequential(("lstm", L.LSTM(2, 3, seed=0, dtype=F64)), ("fc", L.Linear(3, 4, rng=rng, dtype=F64)))
    check_backward(m, rng.standard_normal((3, 2, 2)))
    text = m.summary((2, 2), print_fn=None)
    assert "lstm (LSTM)" in text and "(N, 3)" in text and "(N, 4)" in text
    assert f"total parameters: {4 * 3 * (2 + 3) + 2 * 12 + 3 * 4 + 4:,}" in text


# ============================================================================ the zoo models
def test_arith_models_shapes_and_summaries():
    cnn = models.arith_cnn(seed=0)
    assert cnn["conv1"].params["weight"].shape == (16, 1, 3, 3)
    assert cnn["drop1"].p == 0.25
    x = np.random.default_rng(0).random((2, 1, 28, 28), dtype=F32)
    assert cnn.forward(x).shape == (2, 10)
    lstm = models.arith_lstm(1, 8)
    assert lstm.forward(np.zeros((3, 2, 1), F32)).shape == (3, models.ARITH_CLASSES)
    m2 = models.arith_model2(8)
    assert m2.forward([x, x]).shape == (2, 28)
    text = m2.summary([(1, 28, 28), (1, 28, 28)], print_fn=None)
    assert "seq (Stack) <- p1, p2" in text and "(N, 2, 10)" in text and "(N, 28)" in text
    assert f"total parameters: {m2.num_params():,}" in text
