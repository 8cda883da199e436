"""Tests for pyconvnet.optim: the Kyoto Univ. exercise §5.4 update rules on tiny cases whose
expected values are worked out here step by step with scalar arithmetic (never by
calling the optimizer), weight decay, schedules, state_dict round trips, in-place
updates without fresh memory, and argument errors."""
from __future__ import annotations

import json
import math
import tracemalloc

import numpy as np
import pytest

from pyconvnet import layers as L
from pyconvnet import optim
from pyconvnet.losses import SoftmaxCrossEntropy
from pyconvnet.optim import (SGD, AdaDelta, AdaGrad, Adam, CosineAnnealing, ExponentialLR, LambdaLR, Lookahead, MomentumSGD,
                             NesterovSGD,
                             MultiStepLR, RMSProp, StepLR, optimizer_from_config)

W0 = [1.0, -2.0]
GRADS = [[0.5, -1.0], [0.1, 0.3], [-0.2, 0.4]]  # the gradient seen at steps 1, 2, 3


def run(opt_cls, steps=3, dtype=np.float64, **kw):
    """Runs the optimizer on W = W0 with the fixed GRADS; returns W after each step."""
    w = np.array(W0, dtype)
    g = np.zeros_like(w)
    opt = opt_cls([("w", w, g)], **kw)
    out = []
    for k in range(steps):
        g[...] = GRADS[k]
        opt.step()
        out.append(w.copy())
    assert np.array_equal(g, np.array(GRADS[steps - 1], dtype))  # the optimizer never writes the grads
    return out


def by_hand(update, state0):
    """Applies a scalar update rule element by element: update(w, g, state, t) -> (w, state)."""
    ws = []
    w = list(W0)
    state = [dict(state0) for _ in w]
    for t, grads in enumerate(GRADS, 1):
        for i, g in enumerate(grads):
            w[i], state[i] = update(w[i], g, state[i], t)
        ws.append(list(w))
    return ws


def test_sgd_eq39():
    # W <- W - 0.1 g, worked out: 1 - 0.05 = 0.95, 0.95 - 0.01 = 0.94, 0.94 + 0.02 = 0.96
    out = run(SGD, lr=0.1)
    np.testing.assert_allclose([o[0] for o in out], [0.95, 0.94, 0.96], rtol=1e-14)
    np.testing.assert_allclose([o[1] for o in out], [-1.9, -1.93, -1.97], rtol=1e-14)


def test_momentum_sgd_eqs40_41():
    # dW <- 0.9 dW - 0.1 g; W <- W + dW  (dW0 = 0), first element worked out:
    # dW1 = -0.05 -> W = 0.95; dW2 = -0.045 - 0.01 = -0.055 -> 0.895; dW3 = -0.0495 + 0.02 = -0.0295 -> 0.8655
    out = run(MomentumSGD, lr=0.1, momentum=0.9)
    np.testing.assert_allclose([o[0] for o in out], [0.95, 0.895, 0.8655], rtol=1e-14)
    # second element: dW = 0.1, 0.09 - 0.03 = 0.06, 0.054 - 0.04 = 0.014
    np.testing.assert_allclose([o[1] for o in out], [-1.9, -1.84, -1.826], rtol=1e-14)


def test_adagrad_eqs42_43():
    def rule(w, g, s, t):
        h = s["h"] + g * g
        return w - 0.1 * g / math.sqrt(h), {"h": h}

    np.testing.assert_allclose(run(AdaGrad, lr=0.1, h0=1e-8), by_hand(rule, {"h": 1e-8}), rtol=1e-13)
    # first step is lr * sign(g) (up to h0): 1 - 0.1 = 0.9
    assert run(AdaGrad, steps=1, lr=0.1)[0][0] == pytest.approx(0.9, rel=1e-7)


def test_rmsprop_eqs44_45():
    def rule(w, g, s, t):
        h = 0.9 * s["h"] + 0.1 * g * g
        return w - 0.01 * g / (math.sqrt(h) + 1e-8), {"h": h}

    np.testing.assert_allclose(run(RMSProp, lr=0.01, rho=0.9, eps=1e-8), by_hand(rule, {"h": 0.0}), rtol=1e-13)


def test_adadelta_eqs46_49():
    def rule(w, g, s, t):
        h = 0.95 * s["h"] + 0.05 * g * g
        dw = -math.sqrt(s["s"] + 1e-6) / math.sqrt(h + 1e-6) * g
        return w + dw, {"h": h, "s": 0.95 * s["s"] + 0.05 * dw * dw}

    np.testing.assert_allclose(run(AdaDelta), by_hand(rule, {"h": 0.0, "s": 0.0}), rtol=1e-13)  # defaults
    # first step, worked out: h = 0.05 * 0.25 = 0.0125; dW = -sqrt(1e-6)/sqrt(0.012501) * 0.5
    assert run(AdaDelta, steps=1)[0][0] == pytest.approx(1.0 - 1e-3 / math.sqrt(0.012501) * 0.5, rel=1e-12)


def test_adam_eqs50_55():
    def rule(w, g, s, t):
        m = 0.9 * s["m"] + 0.1 * g
        v = 0.999 * s["v"] + 0.001 * g * g
        mhat, vhat = m / (1 - 0.9 ** t), v / (1 - 0.999 ** t)
        return w - 0.01 * mhat / (math.sqrt(vhat) + 1e-8), {"m": m, "v": v}

    np.testing.assert_allclose(run(Adam, lr=0.01), by_hand(rule, {"m": 0.0, "v": 0.0}), rtol=1e-13)
    # bias correction makes the first step lr * sign(g): 1 - 0.01
    assert run(Adam, steps=1, lr=0.01)[0][0] == pytest.approx(0.99, rel=1e-9)


def test_seed002_recommended_defaults():
    w = np.zeros(2)
    p = [("w", w, np.zeros(2))]
    m = MomentumSGD(p)
    assert (m.lr, m.momentum) == (0.01, 0.9)
    a = AdaGrad(p)
    assert (a.lr, a.h0) == (0.001, 1e-8)
    r = RMSProp(p)
    assert (r.lr, r.rho, r.eps) == (0.001, 0.9, 1e-8)
    d = AdaDelta(p)
    assert (d.lr, d.rho, d.eps) == (1.0, 0.95, 1e-6)
    ad = Adam(p)
    assert (ad.lr, ad.beta1, ad.beta2, ad.eps) == (0.001, 0.9, 0.999, 1e-8)
    with pytest.raises(TypeError):
        SGD(p)  # plain SGD has no default learning rate


def test_weight_decay_is_added_to_the_gradient():
    # W <- W - lr (g + wd W): 1 - 0.1 (0.5 + 0.01 * 1) = 0.949
    out = run(SGD, steps=1, lr=0.1, weight_decay=0.01)
    assert out[0][0] == pytest.approx(0.949, rel=1e-14)
    assert out[0][1] == pytest.approx(-2.0 - 0.1 * (-1.0 - 0.02), rel=1e-14)

    def rule(w, g, s, t):
        g = g + 0.1 * w
        m = 0.9 * s["m"] + 0.1 * g
        v = 0.999 * s["v"] + 0.001 * g * g
        mhat, vhat = m / (1 - 0.9 ** t), v / (1 - 0.999 ** t)
        return w - 0.01 * mhat / (math.sqrt(vhat) + 1e-8), {"m": m, "v": v}

    np.testing.assert_allclose(run(Adam, lr=0.01, weight_decay=0.1), by_hand(rule, {"m": 0.0, "v": 0.0}),
                               rtol=1e-13)


@pytest.mark.parametrize("cls", [SGD, MomentumSGD, AdaGrad, RMSProp, AdaDelta, Adam])
def test_step_is_in_place_and_allocates_nothing(cls):
    w = np.ones(250_000, np.float32)
    g = np.full_like(w, 0.5)
    opt = cls([("w", w, g)], lr=0.01, weight_decay=0.1)
    opt.step()  # the first step sizes the scratch buffer
    tracemalloc.start()
    try:
        opt.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50_000, f"{cls.__name__}.step allocated {peak} bytes (the param is {w.nbytes})"
    assert w.dtype == np.float32 and w[0] != 1.0
    assert all(a.dtype == np.float32 for slot in opt.state.values() for a in slot.values())


def test_schedules():
    assert [StepLR(2, 0.5)(e, 1.0) for e in range(5)] == [1.0, 1.0, 0.5, 0.5, 0.25]
    assert [MultiStepLR([1, 3], 0.1)(e, 2.0) for e in range(4)] == pytest.approx([2.0, 0.2, 0.2, 0.02])
    assert ExponentialLR(0.5)(3, 4.0) == 0.5
    cos = CosineAnnealing(4, eta_min=0.1)
    assert [cos(e, 1.1) for e in (0, 2, 4, 9)] == pytest.approx([1.1, 0.6, 0.1, 0.1])

    w, g = np.zeros(1), np.ones(1)
    opt = SGD([("w", w, g)], lr=0.1, scheduler=StepLR(1, 0.1))
    assert opt.set_epoch(0) == pytest.approx(0.1)
    opt.step()
    assert w[0] == pytest.approx(-0.1)
    assert opt.set_epoch(1) == pytest.approx(0.01)
    opt.step()
    assert w[0] == pytest.approx(-0.11)
    plain = SGD([("w", w, g)], lr=0.1, scheduler=lambda epoch: 1.0 / (epoch + 1))  # a callable lr(epoch)
    assert isinstance(plain.scheduler, LambdaLR) and plain.set_epoch(3) == 0.25
    assert SGD([("w", w, g)], lr=0.3).set_epoch(7) == 0.3  # no scheduler: unchanged
    hooked = SGD([("w", w, g)], lr=1.0, scheduler=lambda epoch: 0.5 ** epoch)
    assert hooked.lr == 1.0 and hooked.on_epoch_end(0) == 0.5 and hooked.on_epoch_end(1) == 0.25
    assert SGD([("w", w, g)], lr=1.0, scheduler=lambda epoch: 0.1).lr == 0.1  # starts at the epoch-0 value


def mlp(seed):
    rng = np.random.default_rng(seed)
    return L.Sequential(L.Linear(4, 8, rng=rng), L.BatchNorm1d(8), L.ReLU(), L.Linear(8, 3, rng=rng))


def train(model, opt, data, epochs):
    loss = SoftmaxCrossEntropy()
    for _ in range(epochs):
        for x, y in data:
            loss.forward(model.forward(x, training=True), y)
            model.backward(loss.backward())
            opt.step()
    return loss.forward(model.forward(data[0][0]), data[0][1])


@pytest.mark.parametrize("cls,kw", [(SGD, dict(lr=0.1)), (MomentumSGD, {}), (AdaGrad, dict(lr=0.01)),
                                    (RMSProp, {}), (AdaDelta, {}), (Adam, dict(weight_decay=1e-3))])
def test_state_dict_round_trip_continues_identically(cls, kw, tmp_path):
    rng = np.random.default_rng(0)
    data = [(rng.standard_normal((16, 4)).astype(np.float32), rng.integers(0, 3, 16)) for _ in range(3)]
    model = mlp(1)
    opt = cls(model.parameters(), scheduler=StepLR(1, 0.5), **kw)
    opt.set_epoch(1)
    train(model, opt, data, 1)
    state = opt.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values()) and int(state["step"]) == 3
    np.savez(tmp_path / "opt.npz", **state)
    np.savez(tmp_path / "model.npz", **model.state_dict())
    cfg = json.dumps({"model": model.config(), "opt": opt.config()})
    final_a = train(model, opt, data, 2)

    cfg = json.loads(cfg)
    model2 = L.layer_from_config(cfg["model"])
    opt2 = optimizer_from_config(cfg["opt"], model2)
    assert isinstance(opt2.scheduler, StepLR) and opt2.lr == opt2.base_lr
    with np.load(tmp_path / "model.npz") as d:
        model2.load_state_dict(d)
    with np.load(tmp_path / "opt.npz") as d:
        opt2.load_state_dict(d)
    assert opt2.step_count == 3 and opt2.lr == opt.lr
    final_b = train(model2, opt2, data, 2)
    assert final_a == final_b
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(model2.state_dict()[k], v)  # bit for bit


def test_optimizers_train_a_tiny_classifier():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 4)).astype(np.float32)
    y = (x[:, 0] + 2 * x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)
    data = [(x, y)]
    for cls, kw in [(SGD, dict(lr=0.5)), (MomentumSGD, dict(lr=0.1)), (AdaGrad, dict(lr=0.1)),
                    (RMSProp, dict(lr=0.01)), (AdaDelta, {}), (Adam, dict(lr=0.01))]:
        model = mlp(0)
        start = SoftmaxCrossEntropy().forward(model.forward(x), y)
        end = train(model, cls(model, **kw), data, 60)
        assert end < 0.7 * start, cls.__name__


def test_zero_grad_and_names():
    model = mlp(0)
    opt = Adam(model)
    assert opt.parameter_names() == list(model.params)
    for g in model.grads.values():
        g.fill(1)
    opt.zero_grad()
    assert not any(g.any() for g in model.grads.values())


def test_load_state_dict_errors():
    w, g = np.zeros(3), np.zeros(3)
    opt = Adam([("w", w, g)])
    good = opt.state_dict()
    assert sorted(good) == ["lr", "m.w", "step", "v.w"]
    with pytest.raises(ValueError, match=r"missing keys \['v.w'\]"):
        opt.load_state_dict({k: v for k, v in good.items() if k != "v.w"})
    with pytest.raises(ValueError, match=r"unexpected keys \['h.w'\]"):
        opt.load_state_dict({**good, "h.w": np.zeros(3)})
    with pytest.raises(ValueError, match=r"state\['m.w'\]: expected shape \(3,\)"):
        opt.load_state_dict({**good, "m.w": np.zeros(4)})
    with pytest.raises(ValueError, match=r"state\['step'\]"):
        opt.load_state_dict({**good, "step": np.array(1.5)})


BAD = [
    (lambda p: SGD(p, lr=-1.0), ValueError, "^lr"),
    (lambda p: SGD(p, lr="fast"), TypeError, "^lr"),
    (lambda p: SGD(p, lr=0.1, weight_decay=-1), ValueError, "^weight_decay"),
    (lambda p: MomentumSGD(p, momentum=1.0), ValueError, "^momentum"),
    (lambda p: RMSProp(p, rho=1.5), ValueError, "^rho"),
    (lambda p: Adam(p, beta2=1.0), ValueError, "^beta2"),
    (lambda p: Adam(p, eps=0), ValueError, "^eps"),
    (lambda p: AdaGrad(p, h0=0), ValueError, "^h0"),
    (lambda p: SGD([], lr=0.1), ValueError, "^params: no parameters"),
    (lambda p: SGD([np.zeros(2)], lr=0.1), TypeError, r"^params\[0\]: expected a \(name, param, grad\) triple"),
    (lambda p: SGD([("w", np.zeros(2), np.zeros(3))], lr=0.1), ValueError, r"^params\['w'\]: grad"),
    (lambda p: SGD([("w", np.zeros(2, int), np.zeros(2, int))], lr=0.1), TypeError, r"^params\['w'\]: the param"),
    (lambda p: SGD(p + p, lr=0.1), ValueError, "^params: duplicate name"),
    (lambda p: StepLR(0), ValueError, "^step_size"),
    (lambda p: CosineAnnealing(0), ValueError, "^T_max"),
    (lambda p: LambdaLR(3), TypeError, "^fn"),
    (lambda p: optimizer_from_config({"class": "Nope"}, p), ValueError, "^cfg"),
]


@pytest.mark.parametrize("i", range(len(BAD)))
def test_bad_arguments(i):
    call, exc, pattern = BAD[i]
    with pytest.raises(exc, match=pattern):
        call([("w", np.zeros(2), np.zeros(2))])


@pytest.mark.parametrize("cls", ["SGD", "MomentumSGD", "AdaDelta", "Adam"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("wd", [0.0, 0.01])
@pytest.mark.parametrize("lr", [0.05, 1.0])
def test_fused_steps_match_numpy_updates_bit_for_bit(cls, dtype, wd, lr):
    """SGD, MomentumSGD, AdaDelta and Adam update contiguous parameters in one C++
    pass; the NumPy _update path (used for anything else) must give the very same bits."""
    base = getattr(optim, cls)
    slow_cls = type("Slow" + cls, (base,), {"_fused": None})
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal((3, 7)).astype(dtype)
    grads = [rng.standard_normal((3, 7)).astype(dtype) for _ in range(4)]
    results = []
    for c in (base, slow_cls):
        p, g = p0.copy(), np.zeros_like(p0)
        opt = c([("w", p, g)], lr=lr, weight_decay=wd)
        for gi in grads:
            g[...] = gi
            opt.step()
        results.append(p)
    assert not np.array_equal(results[0], p0)
    np.testing.assert_array_equal(results[0], results[1])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_steps_flush_denormal_state_and_restore_the_callers_mode(threads, dtype):
    """The fused steps run with denormals flushed to zero (a decaying Adam/momentum
    state below the smallest normal would cost ~100 cycles per element and operation),
    on every thread of the step, and leave the caller's floating-point mode as it was."""
    import pyconvnet

    tiny = np.finfo(dtype).tiny
    n = (1 << 20) + 3  # past the parallel threshold: both threads take chunks
    old = pyconvnet.get_num_threads()
    pyconvnet.set_num_threads(threads)
    try:
        p, g = np.ones(n, dtype), np.zeros(n, dtype)
        m = np.full(n, tiny * dtype(0.25), dtype)  # denormal: read as 0
        v = np.full(n, tiny * dtype(4), dtype)      # normal, decays into the denormal range
        opt = optim.MomentumSGD([("w", p, g)], lr=0.1, momentum=0.1)
        opt.state["velocity"]["w"][...] = v
        opt.step()  # v = 0.1 * v - 0.1 * 0: 0.4 * tiny, a denormal, flushed
        assert not opt.state["velocity"]["w"].any()
        np.testing.assert_array_equal(p, 1)
        a = optim.Adam([("w", p, g)], lr=0.1)
        a.state["m"]["w"][...] = m
        a.step()
        assert not a.state["m"]["w"].any()
    finally:
        pyconvnet.set_num_threads(old)
    # NumPy on this thread still computes with denormals afterwards
    assert np.array(tiny, dtype) * dtype(0.25) > 0


def test_fused_step_skips_arrays_it_cannot_update_in_place():
    """A non-contiguous parameter view still gets the (NumPy) update."""
    big = np.ones((4, 6), np.float32)
    p = big[:, ::2]
    g = np.ones_like(p)
    opt = optim.SGD([("w", p, g)], lr=0.5)
    opt.step()
    np.testing.assert_array_equal(big[:, ::2], 0.5)
    np.testing.assert_array_equal(big[:, 1::2], 1.0)


def test_fused_kernels_refuse_what_they_cannot_update_in_place():
    """The in-place _core steps never update a converted copy: a non-contiguous
    parameter is a TypeError, a read-only or wrongly sized one a ValueError naming
    it; only the gradient (read, not written) may be converted."""
    from pyconvnet import _core

    g = np.ones(4, np.float32)
    p64 = np.ones(4, np.float64)
    _core.sgd_step(p64, g, 0.1, 0.0)  # float64 param: the float32 grad is read as float64
    np.testing.assert_array_equal(p64, 0.9)
    with pytest.raises(TypeError):
        _core.sgd_step(np.ones(8, np.float32)[::2], g, 0.1, 0.0)  # not contiguous
    ro = np.ones(4, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="param: expected a writeable array"):
        _core.sgd_step(ro, g, 0.1, 0.0)
    with pytest.raises(ValueError, match="velocity: expected 4 values"):
        _core.momentum_step(np.ones(4, np.float32), g, np.ones(3, np.float32), 0.1, 0.9, 0.0)
    p = np.ones(4, np.float32)
    _core.sgd_step(p, g, 0.5, 0.0)
    np.testing.assert_array_equal(p, 0.5)


def _tiny_net(seed=0):
    return L.Sequential(L.Conv2d(2, 3, 3, padding=1, seed=seed, dtype=np.float64), L.BatchNorm2d(3, dtype=np.float64),
                        L.ReLU(), L.Flatten(), L.Linear(3 * 4 * 4, 5, seed=seed + 1, dtype=np.float64))


def test_nesterov_sgd_matches_torch_with_param_groups_and_freezing():
    """NesterovSGD is torch.optim.SGD(momentum, nesterov=True) with coupled weight decay, torch-style
    parameter groups (own lr and decay, scaled by the schedule alike), and frozen parameters skipped
    entirely (as torch skips a parameter whose grad is None)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    params = {n: rng.standard_normal((3, 4)) for n in ("a", "b", "c")}
    grads = {n: np.zeros_like(p) for n, p in params.items()}
    triples = lambda names: [(n, params[n], grads[n]) for n in names]  # noqa: E731
    opt = NesterovSGD([{"params": triples(["a", "b"]), "lr": 0.1, "weight_decay": 0.3},
                       {"params": triples(["c"]), "lr": 6.4, "weight_decay": 0.02}], lr=0.1, momentum=0.85)
    tp = {n: torch.tensor(p.copy(), requires_grad=True) for n, p in params.items()}
    topt = torch.optim.SGD([{"params": [tp["a"], tp["b"]], "lr": 0.1, "weight_decay": 0.3},
                            {"params": [tp["c"]], "lr": 6.4, "weight_decay": 0.02}], lr=0.1, momentum=0.85,
                           nesterov=True)
    for step in range(6):
        factor = 0.2 + 0.1 * step
        opt.lr = 0.1 * factor
        for grp, base in zip(topt.param_groups, (0.1, 6.4)):
            grp["lr"] = base * factor
        for n in params:
            grads[n][...] = rng.standard_normal((3, 4))
            tp[n].grad = torch.tensor(grads[n].copy()) if not (step >= 3 and n == "b") else None
        if step == 3:
            opt.freeze("b")
        opt.step()
        topt.step()
        for n in params:
            np.testing.assert_allclose(params[n], tp[n].detach().numpy(), rtol=1e-12, atol=1e-12)
    assert opt.group_of("c") == (pytest.approx(64.0), 0.02)
    cfg = opt.config()
    again = optim.optimizer_from_config(cfg, triples(["a", "b", "c"]))
    assert again.group_of("c") == opt.group_of("c") and again.nesterov
    with pytest.raises(ValueError, match="unknown parameters"):
        opt.freeze("zz")


def test_lookahead_pulls_weights_and_buffers_and_restores():
    net = _tiny_net()
    la = Lookahead(net)
    slow = {k: v.copy() for k, v in list(net.params.items()) + list(net.buffers.items())}
    for k, v in list(net.params.items()) + list(net.buffers.items()):
        if v.dtype.kind == "f":
            v += 1.0  # the fast weights move
    la.update(0.25)
    for k, v in list(net.params.items()) + list(net.buffers.items()):
        if v.dtype.kind == "f":
            np.testing.assert_allclose(v, 0.25 * slow[k] + 0.75 * (slow[k] + 1.0), rtol=1e-12)
        else:
            np.testing.assert_array_equal(v, slow[k])  # the int counter is not averaged
    mid = {k: v.copy() for k, v in net.params.items()}
    for v in net.params.values():
        v -= 5.0
    la.update(1.0)  # decay 1: back to the slow copy
    for k, v in net.params.items():
        np.testing.assert_array_equal(v, mid[k])
    with pytest.raises(ValueError, match="decay"):
        la.update(1.5)
