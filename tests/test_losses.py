"""Tests for pyconvnet.losses: values against the textbook formulas written out here,
gradients against Kyoto Univ. exercise, eq. 12 and central finite differences, stability for
extreme logits, and argument errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyconvnet.losses import BCEWithLogitsLoss, MSELoss, SoftmaxCrossEntropy, log_softmax


def finite_diff(f, a, eps=1e-6):
    g = np.zeros_like(a)
    for i in range(a.size):
        old = a.flat[i]
        a.flat[i] = old + eps
        fp = f(a)
        a.flat[i] = old - eps
        fm = f(a)
        a.flat[i] = old
        g.flat[i] = (fp - fm) / (2 * eps)
    return g


def naive_ce(a, labels):
    """mean_i -log(softmax(a_i)[y_i]) with softmax written out (Kyoto Univ. exercise, eqs. 5-8), moderate logits only."""
    total = 0.0
    for row, y in zip(a, labels):
        e = [math.exp(v) for v in row]
        total += -math.log(e[y] / sum(e))
    return total / len(labels)


def test_ce_value_and_gradient_seed_eq12():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((5, 4)) * 3
    y = np.array([0, 3, 1, 1, 2])
    loss = SoftmaxCrossEntropy()
    assert loss.forward(a, y) == pytest.approx(naive_ce(a, y), rel=1e-12)
    g = loss.backward()
    p = np.exp(a) / np.exp(a).sum(axis=1, keepdims=True)
    onehot = np.eye(4)[y]
    np.testing.assert_allclose(g, (p - onehot) / 5, rtol=1e-12, atol=1e-15)  # eq. 12
    np.testing.assert_allclose(g, finite_diff(lambda z: SoftmaxCrossEntropy().forward(z, y), a.copy()),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(loss.probabilities(), p, rtol=1e-12)


def test_ce_one_hot_and_int_labels_agree_and_soft_labels_fd():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((6, 3))
    y = rng.integers(0, 3, 6)
    l1, l2 = SoftmaxCrossEntropy(), SoftmaxCrossEntropy()
    assert l1.forward(a, y) == pytest.approx(l2.forward(a, np.eye(3)[y]), rel=1e-14)
    np.testing.assert_allclose(l1.backward(), l2.backward(), rtol=1e-14, atol=1e-16)
    t = rng.random((6, 3)) * 0.7  # soft targets that do not sum to 1
    soft = SoftmaxCrossEntropy()
    want = np.sum(-t * (a - np.log(np.exp(a).sum(axis=1, keepdims=True)))) / 6
    assert soft.forward(a, t) == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(soft.backward(), finite_diff(lambda z: SoftmaxCrossEntropy().forward(z, t), a.copy()),
                               rtol=1e-6, atol=1e-9)


def test_ce_per_pixel_logits_and_sum_reduction():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((2, 3, 4, 5))
    y = rng.integers(0, 3, (2, 4, 5))
    flat_a = a.transpose(0, 2, 3, 1).reshape(-1, 3)
    loss = SoftmaxCrossEntropy()
    assert loss.forward(a, y) == pytest.approx(naive_ce(flat_a, y.reshape(-1)), rel=1e-12)
    np.testing.assert_allclose(loss.backward(), finite_diff(lambda z: SoftmaxCrossEntropy().forward(z, y), a.copy()),
                               rtol=1e-6, atol=1e-9)
    s = SoftmaxCrossEntropy(reduction="sum")
    assert s.forward(a, y) == pytest.approx(40 * loss.forward(a, y), rel=1e-12)
    np.testing.assert_allclose(s.backward(), 40 * loss.backward(), rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_ce_extreme_logits_stay_finite(dtype):
    a = np.array([[1000.0, 0.0, -1000.0], [-1e30, 1e30, 0.0], [5e3, 5e3, -5e3]], dtype=dtype)
    y = np.array([2, 1, 0])
    loss = SoftmaxCrossEntropy()
    v = loss.forward(a, y)
    g = loss.backward()
    assert np.isfinite(v) and np.all(np.isfinite(g)) and g.dtype == dtype
    # row 0: -log softmax = 2000; row 1: 0; row 2: log 2
    assert v == pytest.approx((2000.0 + 0.0 + math.log(2.0)) / 3, rel=1e-6)
    np.testing.assert_allclose(g[0], np.array([1, 0, -1]) / 3, atol=1e-7)
    np.testing.assert_allclose(g[2], np.array([-0.5, 0.5, 0]) / 3, atol=1e-7)
    assert np.all(np.isfinite(log_softmax(a)))


@given(st.lists(st.floats(-50, 50), min_size=2, max_size=6), st.floats(-1e4, 1e4), st.data())
def test_ce_properties(row, shift, data):
    a = np.array([row, row[::-1]])
    y = np.array([data.draw(st.integers(0, len(row) - 1)), 0])
    loss = SoftmaxCrossEntropy()
    v = loss.forward(a, y)
    g = loss.backward()
    assert v >= 0.0
    np.testing.assert_allclose(g.sum(axis=1), 0.0, atol=1e-12)  # softmax - onehot sums to zero
    # invariant to adding a constant per row (what eq. 6's alpha relies on)
    assert SoftmaxCrossEntropy().forward(a + shift, y) == pytest.approx(v, rel=1e-9, abs=1e-9)
    # the log-sum-exp form matches the naive formula where the latter cannot overflow
    assert v == pytest.approx(naive_ce(a, y), rel=1e-9, abs=1e-12)


def test_mse():
    rng = np.random.default_rng(3)
    x, t = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    loss = MSELoss()
    assert loss.forward(x, t) == pytest.approx(np.sum((x - t) ** 2) / 12, rel=1e-12)
    np.testing.assert_allclose(loss.backward(), finite_diff(lambda z: MSELoss().forward(z, t), x.copy()),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(loss.backward(grad=2.0), 2 * loss.backward(), rtol=1e-15)
    assert MSELoss(reduction="sum").forward(x, t) == pytest.approx(np.sum((x - t) ** 2), rel=1e-12)


def test_bce_with_logits():
    rng = np.random.default_rng(4)
    x, t = rng.standard_normal((4, 3)) * 3, rng.random((4, 3))
    sig = 1 / (1 + np.exp(-x))
    want = np.mean(-(t * np.log(sig) + (1 - t) * np.log(1 - sig)))
    loss = BCEWithLogitsLoss()
    assert loss.forward(x, t) == pytest.approx(want, rel=1e-12)
    np.testing.assert_allclose(loss.backward(), (sig - t) / 12, rtol=1e-12)
    np.testing.assert_allclose(loss.backward(), finite_diff(lambda z: BCEWithLogitsLoss().forward(z, t), x.copy()),
                               rtol=1e-6, atol=1e-9)
    # extreme logits: exact limits, no overflow warnings
    big = np.array([800.0, -800.0, 800.0, -800.0], np.float32)
    tt = np.array([1.0, 0.0, 0.0, 1.0], np.float32)
    v = BCEWithLogitsLoss(reduction="sum").forward(big, tt)
    assert v == pytest.approx(1600.0, rel=1e-6)


@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 40), c=st.integers(1, 12),
       scale=st.sampled_from([1.0, 30.0, 1e4]), dtype=st.sampled_from([np.float32, np.float64]),
       reduction=st.sampled_from(["mean", "sum"]))
def test_ce_integer_label_kernel_matches_one_hot_numpy_path(seed, n, c, scale, dtype, reduction):
    """2-D logits with integer labels go through the C++ kernel, one-hot targets through NumPy:
    the same loss, probabilities and gradient, in the logits' dtype, for any logit scale (float32:
    the two exps may differ by an ulp, so p - 1 near p = 1 differs by ~1e-7 absolute)."""
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal((n, c)) * scale).astype(dtype)
    y = rng.integers(0, c, n).astype(rng.choice([np.int64, np.int32, np.uint8]))
    fast, ref = SoftmaxCrossEntropy(reduction), SoftmaxCrossEntropy(reduction)
    lf, lr = fast.forward(a, y), ref.forward(a, np.eye(c, dtype=dtype)[y])
    if n == 0 and reduction == "mean":
        assert math.isnan(lf) and math.isnan(lr)  # the mean of nothing, as torch
    else:
        assert math.isfinite(lf) and lf == pytest.approx(lr, rel=1e-5 if dtype == np.float32 else 1e-12, abs=1e-6)
    tol = dict(rtol=2e-6, atol=3e-7) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(fast.probabilities(), ref.probabilities(), **tol)
    g = fast.backward(2.0)
    assert g.dtype == dtype and g.shape == a.shape
    np.testing.assert_allclose(g, ref.backward(2.0), **tol)
    if n:
        np.testing.assert_allclose(g.sum(axis=1), 0, atol=1e-5 if dtype == np.float32 else 1e-13)


def test_loss_errors():
    loss = SoftmaxCrossEntropy()
    with pytest.raises(ValueError, match=r"^labels: class indices must lie in \[0, 3\), got range \[-1, 1\]"):
        loss.forward(np.zeros((2, 3)), np.array([-1, 1]))
    with pytest.raises(ValueError, match=r"^labels: class indices must lie in \[0, 3\)"):
        loss.forward(np.zeros((2, 3)), np.array([0, 2**64 - 1], np.uint64))
    with pytest.raises(ValueError, match=r"^labels: expected integer labels of shape \(2,\)"):
        loss.forward(np.zeros((2, 3)), np.array([0, 1, 2]))
    with pytest.raises(RuntimeError, match="before forward"):
        loss.backward()
    with pytest.raises(ValueError, match=r"^labels: class indices must lie in \[0, 3\)"):
        loss.forward(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"^labels: expected integer labels of shape \(2,\)"):
        loss.forward(np.zeros((2, 3)), np.array([[0, 1]]))
    with pytest.raises(ValueError, match="^labels: expected the shape of the prediction"):
        loss.forward(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(TypeError, match="^labels: expected integer class indices"):
        loss.forward(np.zeros((2, 3)), np.array([True, False]))
    with pytest.raises(ValueError, match=r"^logits: expected \(N, C\)"):
        loss.forward(np.zeros(3), np.array([0]))
    with pytest.raises(TypeError, match="^logits: expected a float32 or float64"):
        loss.forward(np.zeros((2, 3), np.int64), np.array([0, 1]))
    with pytest.raises(ValueError, match="^reduction"):
        SoftmaxCrossEntropy(reduction="none")
    with pytest.raises(ValueError, match="^target: expected the shape"):
        MSELoss().forward(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="^target: expected the shape"):
        BCEWithLogitsLoss().forward(np.zeros(3), np.zeros(4))


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@given(n=st.integers(1, 6), c=st.integers(2, 7), eps=st.sampled_from([0.0, 0.1, 0.2, 1.0]), seed=st.integers(0, 999),
       spatial=st.booleans(), soft=st.booleans())
def test_label_smoothing_matches_the_smoothed_target_and_finite_differences(n, c, eps, seed, spatial, soft,
                                                                            reduction):
    """label_smoothing=eps is CE against (1 - eps) * target + eps * sum(target) / C, integer or
    probability targets, 2-D or per-pixel logits; its gradient passes float64 finite differences."""
    from pyconvnet import gradcheck

    rng = np.random.default_rng(seed)
    shape = (n, c, 3) if spatial else (n, c)
    a = rng.standard_normal(shape) * 3
    y = rng.integers(0, c, (n, 3) if spatial else (n,))
    onehot = np.moveaxis(np.eye(c)[y], -1, 1)
    t = rng.dirichlet(np.ones(c), size=shape[:1] + shape[2:])
    t = np.moveaxis(t, -1, 1) if spatial else t
    target, labels = (t, t) if soft else (onehot, y)
    q = (1 - eps) * target + eps * target.sum(axis=1, keepdims=True) / c
    loss = SoftmaxCrossEntropy(reduction=reduction, label_smoothing=eps)
    got = loss.forward(a, labels)
    want = SoftmaxCrossEntropy(reduction=reduction).forward(a, q)  # the plain loss on the smoothed target
    assert abs(got - want) <= 1e-10 * max(1.0, abs(want))
    g = loss.backward()
    gradcheck.check_gradient(lambda: SoftmaxCrossEntropy(reduction=reduction, label_smoothing=eps).forward(a, labels),
                             a, g, tol=1e-6)


def test_label_smoothing_matches_torch_and_checks_its_argument():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((16, 10)).astype(np.float32) * 4
    y = rng.integers(0, 10, 16)
    loss = SoftmaxCrossEntropy(reduction="sum", label_smoothing=0.2)
    got, g = loss.forward(a, y), loss.backward()
    ta = torch.from_numpy(a).requires_grad_(True)
    tl = torch.nn.functional.cross_entropy(ta, torch.from_numpy(y), label_smoothing=0.2, reduction="sum")
    tl.backward()
    assert abs(got - tl.item()) <= 1e-4 * abs(tl.item())
    np.testing.assert_allclose(g, ta.grad.numpy(), rtol=1e-4, atol=1e-6)
    for bad in (-0.1, 1.5, "x", True):
        with pytest.raises(ValueError, match="label_smoothing"):
            SoftmaxCrossEntropy(label_smoothing=bad)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_bce_with_logits_matches_torch(reduction):
    """The GAN losses (Kyoto Univ. exercise §6.6): binary cross-entropy on logits, soft and hard
    targets, logits large enough that a naive log(sigmoid) would overflow."""
    torch = pytest.importorskip("torch")
    from pyconvnet import gradcheck

    rng = np.random.default_rng(5)
    x = (rng.standard_normal((32, 1)) * 30).astype(np.float64)
    t = np.concatenate([rng.random((16, 1)), rng.integers(0, 2, (16, 1))]).astype(np.float64)
    loss = BCEWithLogitsLoss(reduction=reduction)
    got = loss.forward(x, t)
    g = loss.backward(0.5)
    tx = torch.from_numpy(x).requires_grad_(True)
    tl = torch.nn.functional.binary_cross_entropy_with_logits(tx, torch.from_numpy(t), reduction=reduction)
    (0.5 * tl).backward()
    assert got == pytest.approx(tl.item(), rel=1e-12)
    np.testing.assert_allclose(g, tx.grad.numpy(), rtol=1e-12, atol=1e-15)
    gradcheck.check_gradient(lambda: 0.5 * BCEWithLogitsLoss(reduction=reduction).forward(x, t), x, g, tol=1e-6)
