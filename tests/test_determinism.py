"""Bit-identical training for any thread count: the kernels' reductions (weight
gradients over samples, Winograd's over tiles, the relaxed contraction's) run over fixed
chunks summed in a fixed order, never over per-thread shares, so a few training steps of
LeNet-5 and the Keras CNN give the same bytes at 1 and 2 threads."""
from __future__ import annotations

import numpy as np
import pytest

import pyconvnet
from pyconvnet import layers as L
from pyconvnet import losses, models, optim
from pyconvnet.training import fit


def _train(build, opt_cls, threads, n, batch, **opt_kw):
    old = pyconvnet.get_num_threads()
    pyconvnet.set_num_threads(threads)
    try:
        rng = np.random.default_rng(7)
        x = rng.integers(0, 256, (n, 1, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n)
        net = build()
        opt = opt_cls(net.parameters(), **opt_kw)
        fit(net, (x, y), epochs=1, batch_size=batch, optimizer=opt, loss=losses.SoftmaxCrossEntropy(), seed=3,
            verbose=False)
        return {k: v.copy() for k, v in net.state_dict().items()}
    finally:
        pyconvnet.set_num_threads(old)


@pytest.mark.parametrize("name, build, opt_cls, opt_kw, n, batch", [
    ("lenet5", models.lenet5, optim.SGD, dict(lr=0.05), 256, 64),
    ("keras_cnn", models.keras_cnn, optim.AdaDelta, dict(lr=1.0), 128, 32),
    ("relaxed", lambda: models.relaxed_net(14, channels=4, seed=1), optim.Adam, dict(lr=1e-2), 128, 32),
])
def test_training_bits_do_not_depend_on_threads(name, build, opt_cls, opt_kw, n, batch):
    if name == "relaxed":
        def build_flat():  # 28x28 digits mean-pooled to 14x14 by the net's own first layer
            return L.Sequential(L.AvgPool2d(2), *models.relaxed_net(14, channels=4, seed=1))
        build = build_flat
    one = _train(build, opt_cls, 1, n, batch, **opt_kw)
    two = _train(build, opt_cls, 2, n, batch, **opt_kw)
    assert one.keys() == two.keys()
    changed = [k for k in one if one[k].tobytes() != two[k].tobytes()]
    assert not changed, f"{name}: parameters differ between 1 and 2 threads: {changed}"
    # and training did change them (the comparison is not of two untouched models)
    fresh = build().state_dict()
    assert any(not np.array_equal(fresh[k], one[k]) for k in one)
