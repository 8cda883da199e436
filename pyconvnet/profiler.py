"""Where a model's time goes: wall time per (layer class, forward/backward) over its
leaf layers, and named phases of a training loop (data, optimizer, ...).

    timer = LayerTimer(model)
    with timer:                      # wraps the leaf layers' forward/backward
        ...train...
        with timer.phase("optimizer"):
            opt.step()
    timer.table()                    # {"Conv2d forward": s, ..., "optimizer": s}

The wrappers cost a clock read per call (microseconds against milliseconds of kernel)."""
from __future__ import annotations

import contextlib
import time
from collections import defaultdict

__all__ = ["LayerTimer"]


def _leaves(layer):
    children = list(layer._children())
    if not children:
        yield layer
    for _, child in children:
        yield from _leaves(child)


class LayerTimer:
    def __init__(self, model):
        self.model = model
        self.seconds = defaultdict(float)
        self.calls = defaultdict(int)
        self._wrapped = []

    def _wrap(self, layer, method):
        key = f"{type(layer).__name__} {method}"
        orig = getattr(type(layer), method)

        def timed(*args, **kw):
            t0 = time.perf_counter()
            try:
                return orig(layer, *args, **kw)
            finally:
                self.seconds[key] += time.perf_counter() - t0
                self.calls[key] += 1

        setattr(layer, method, timed)
        self._wrapped.append((layer, method))

    def __enter__(self):
        for leaf in _leaves(self.model):
            self._wrap(leaf, "forward")
            self._wrap(leaf, "backward")
        return self

    def __exit__(self, *exc):
        for layer, method in self._wrapped:
            del layer.__dict__[method]
        self._wrapped.clear()
        return False

    @contextlib.contextmanager
    def phase(self, name):
        """Times the block under ``name`` (layer time inside it is counted under the layers too)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t0
            self.calls[name] += 1

    def table(self):
        """{key: seconds}, largest first."""
        return dict(sorted(self.seconds.items(), key=lambda kv: -kv[1]))
