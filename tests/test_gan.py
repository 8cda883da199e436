"""pyconvnet.gan: the two updates of the Kyoto Univ. exercise's Algorithm 1 (§6.6). The generator
step leaves the discriminator exactly as it was (parameters and running statistics), both steps'
gradients agree with float64 finite differences of the losses they minimise, and the DCGAN
networks have the shapes and ranges the exercise lists."""
from __future__ import annotations

import numpy as np
import pytest

from pyconvnet import layers as L
from pyconvnet.gan import GANStep, sample_z
from pyconvnet.gradcheck import check_gradient
from pyconvnet.losses import BCEWithLogitsLoss
from pyconvnet.models import dcgan_discriminator, dcgan_generator, smile_cnn
from pyconvnet.optim import SGD, Adam

Z = 3


def _nets(dtype=np.float64, width=2, size=8):
    G = dcgan_generator(z_dim=Z, width=width, size=size, seed=1).astype(dtype)
    D = dcgan_discriminator(width=width, size=size, seed=2).astype(dtype)
    # N(0, 0.02) weights give D logits ~ 0: spread them so the losses are not flat
    for net in (G, D):
        for k, p in net.params.items():
            if k.endswith("weight") and p.ndim > 1:
                p *= 20
    return G, D


def _state(net):
    return {k: v.copy() for k, v in net.state_dict().items()}


def _bitwise_equal(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)


def test_generator_step_leaves_the_discriminator_unchanged():
    G, D = _nets(np.float32)
    step = GANStep(G, D, Adam(G, lr=1e-2, beta1=0.5), Adam(D, lr=1e-2, beta1=0.5), Z)
    rng = np.random.default_rng(0)
    step.discriminator_step(rng.uniform(-1, 1, (4, 1, 8, 8)).astype(np.float32), rng)  # running stats move
    d_before, g_before = _state(D), _state(G)
    D.zero_grad()
    step.generator_step(8, rng)
    assert _bitwise_equal(_state(D), d_before)   # parameters AND batch-norm running statistics
    # D's backward did run (its gradient carried the loss to G) but nothing applied it
    assert any(np.any(g != 0) for g in D.grads.values())
    g_after = _state(G)
    assert any(not np.array_equal(g_after[k], g_before[k]) for k in G.params)


def test_discriminator_step_leaves_the_generator_parameters_unchanged():
    G, D = _nets(np.float32)
    step = GANStep(G, D, Adam(G), Adam(D), Z)
    rng = np.random.default_rng(1)
    g_params = {k: v.copy() for k, v in G.params.items()}
    d_params = {k: v.copy() for k, v in D.params.items()}
    loss, d_real, d_fake = step.discriminator_step(rng.uniform(-1, 1, (4, 1, 8, 8)).astype(np.float32), rng)
    assert all(np.array_equal(G.params[k], v) for k, v in g_params.items())
    assert any(not np.array_equal(D.params[k], v) for k, v in d_params.items())
    assert np.isfinite(loss) and loss > 0 and 0 < d_real < 1 and 0 < d_fake < 1


def test_generator_gradient_is_that_of_minus_log_d_of_g_through_d():
    """G's gradient from generator_step (an lr-0 optimizer keeps the weights) against finite
    differences of -mean log sigmoid(D(G(z))) (footnote 5's loss), both nets in training mode."""
    G, D = _nets()
    step = GANStep(G, D, SGD(G, lr=0.0), SGD(D, lr=0.0), Z)
    n, seed = 6, 7
    loss = step.generator_step(n, np.random.default_rng(seed), np.float64)
    z = sample_z(np.random.default_rng(seed), n, Z, np.float64)

    def f():
        logits = D.forward(G.forward(z, training=True), training=True).reshape(n)
        return -np.mean(np.log(1.0 / (1.0 + np.exp(-logits))))

    assert loss == pytest.approx(f(), rel=1e-10)
    grads = {k: g.copy() for k, g in G.grads.items()}
    for name, p in G.params.items():
        check_gradient(f, p, grads[name], tol=1e-5, what=f"G.{name}")


def test_discriminator_gradient_is_that_of_the_mean_bce_over_real_and_fake():
    G, D = _nets()
    step = GANStep(G, D, SGD(G, lr=0.0), SGD(D, lr=0.0), Z)
    rng = np.random.default_rng(3)
    real = rng.uniform(-1, 1, (5, 1, 8, 8))
    seed = 11
    loss, d_real, d_fake = step.discriminator_step(real, np.random.default_rng(seed))
    fake = G.forward(sample_z(np.random.default_rng(seed), 5, Z, np.float64), training=True)
    bce = BCEWithLogitsLoss()

    def f():  # real and fake as separate batches (batch norm per kind), the mean over all 10 images
        lr_ = D.forward(real, training=True).reshape(5)
        lf = D.forward(fake, training=True).reshape(5)
        return 0.5 * (bce.forward(lr_, np.ones(5)) + bce.forward(lf, np.zeros(5)))

    assert loss == pytest.approx(f(), rel=1e-10)
    lr_ = D.forward(real, training=True).reshape(5)
    assert d_real == pytest.approx(float(np.mean(1 / (1 + np.exp(-lr_)))), rel=1e-10)
    grads = {k: g.copy() for k, g in D.grads.items()}
    for name, p in D.params.items():
        check_gradient(f, p, grads[name], tol=1e-5, what=f"D.{name}")


def test_a_step_returns_finite_logs_and_alternates():
    G, D = _nets(np.float32, width=4)
    step = GANStep(G, D, Adam(G, lr=2e-4, beta1=0.5), Adam(D, lr=2e-4, beta1=0.5), Z)
    rng = np.random.default_rng(0)
    logs = step(rng.uniform(-1, 1, (8, 1, 8, 8)).astype(np.float32), rng)
    assert set(logs) == {"d_loss", "g_loss", "d_real", "d_fake"}
    assert all(np.isfinite(v) for v in logs.values())
    assert step.g_opt.step_count == 1 and step.d_opt.step_count == 1


def test_optimizers_must_hold_only_their_own_network():
    G, D = _nets(np.float32)
    both = Adam(list(G.parameters()) + [(f"d.{k}", p, g) for k, p, g in D.parameters()])
    with pytest.raises(ValueError, match="g_optimizer: holds parameters of the discriminator"):
        GANStep(G, D, both, Adam(D), Z)
    with pytest.raises(ValueError, match="d_optimizer: holds parameters of the generator"):
        GANStep(G, D, Adam(G), Adam(G), Z)
    with pytest.raises(ValueError, match="z_dim"):
        GANStep(G, D, Adam(G), Adam(D), 0)


def test_dcgan_networks_shapes_and_ranges():
    G = dcgan_generator(z_dim=100, width=8, seed=0)
    D = dcgan_discriminator(width=8, seed=0)
    z = sample_z(np.random.default_rng(0), 5, 100)
    x = G.forward(z, training=True)
    assert x.shape == (5, 1, 28, 28) and x.dtype == np.float32
    assert np.all(np.abs(x) <= 1) and np.std(x) > 0            # tanh: [-1, 1]
    assert D.forward(x, training=True).shape == (5, 1)
    # the exercise's layer kinds: transposed convs, BN, ReLU, tanh in G; strided convs, LeakyReLU in D
    kinds_g = {type(layer).__name__ for layer in G}
    kinds_d = {type(layer).__name__ for layer in D}
    assert {"ConvTranspose2d", "BatchNorm1d", "BatchNorm2d", "ReLU", "Tanh"} <= kinds_g
    assert {"Conv2d", "LeakyReLU", "BatchNorm2d"} <= kinds_d and not kinds_d & {"MaxPool2d", "AvgPool2d"}
    assert all(layer.stride == (2, 2) for layer in D if isinstance(layer, L.Conv2d))
    with pytest.raises(ValueError, match="size: expected a multiple of 4"):
        dcgan_generator(size=30)


def test_smile_cnn_takes_the_exercises_image_size():
    m = smile_cnn(width=4, seed=0)
    y = m.forward(np.zeros((2, 3, 218, 178), np.float32))
    assert y.shape == (2, 2)
    assert "GlobalAvgPool2d" in m.summary((3, 218, 178), print_fn=None)
