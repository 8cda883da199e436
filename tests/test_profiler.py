"""LayerTimer: per-class forward/backward time and named phases, wrappers removed after."""
from __future__ import annotations

import numpy as np

from pyconvnet import models
from pyconvnet.profiler import LayerTimer


def test_layer_timer_counts_every_leaf_call_and_unwraps():
    net = models.lenet5()
    x = np.random.default_rng(0).random((4, 1, 28, 28)).astype(np.float32)
    timer = LayerTimer(net)
    with timer:
        for _ in range(2):
            y = net.forward(x, training=True)
            net.backward(np.ones_like(y))
        with timer.phase("idle"):
            pass
    assert timer.calls["Conv2d forward"] == 6 and timer.calls["Conv2d backward"] == 6  # 3 convs x 2 steps
    assert timer.calls["ReLU forward"] == 8 and timer.calls["idle"] == 1
    assert all(v >= 0 for v in timer.table().values()) and timer.seconds["Conv2d forward"] > 0
    assert all("forward" not in vars(layer) for layer in net)  # no wrapper left behind
    calls = dict(timer.calls)
    net.forward(x)
    assert dict(timer.calls) == calls
