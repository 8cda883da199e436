"""training.fit_generator / evaluate_generator / endless: Keras's fit_generator over a stream of
batches (the Kyoto Univ. exercise §6.5 B2 trains this way on images read from folders), with
steps_per_epoch and validation_steps; the same updates as fit on the same batches."""
from __future__ import annotations

import numpy as np
import pytest

from pyconvnet import layers as L
from pyconvnet.losses import SoftmaxCrossEntropy
from pyconvnet.optim import Adam
from pyconvnet.training import endless, evaluate, evaluate_generator, fit, fit_generator


def _model(seed=0):
    rng = np.random.default_rng(seed)
    return L.Sequential(L.Flatten(), L.Linear(12, 8, rng=rng), L.ReLU(), L.Linear(8, 3, rng=rng))


def _data(n=40, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 1, 3, 4)).astype(np.float32)
    return x, (x.reshape(n, -1)[:, :3].argmax(axis=1)).astype(np.int64)


def _batches(x, y, b):
    return [(x[s:s + b], y[s:s + b]) for s in range(0, len(x), b)]


def test_fit_generator_makes_the_updates_fit_makes_on_the_same_batches():
    x, y = _data()
    a, b = _model(), _model()
    ha = fit(a, (x, y), 3, 8, Adam(a), SoftmaxCrossEntropy(), shuffle=False, transform=lambda v: v, seed=0,
             verbose=False)
    hb = fit_generator(b, _batches(x, y, 8), steps_per_epoch=5, epochs=3, optimizer=Adam(b),
                       loss=SoftmaxCrossEntropy(), seed=0, verbose=False)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    np.testing.assert_allclose(hb.train_loss, ha.train_loss, rtol=1e-12)
    assert hb.train_acc == ha.train_acc and hb.epoch == [1, 2, 3]


class _Counting:
    """A re-iterable that records which batches were handed out."""

    def __init__(self, batches):
        self.batches, self.served = batches, []

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for i, b in enumerate(self.batches):
            self.served.append(i)
            yield b


def test_steps_per_epoch_continues_the_stream_and_wraps_around():
    x, y = _data(24)
    data = _Counting(_batches(x, y, 8))          # 3 batches
    val = _Counting(_batches(x[:10], y[:10], 4))  # 3 batches (4, 4, 2)
    m = _model()
    h = fit_generator(m, data, steps_per_epoch=2, epochs=4, optimizer=Adam(m), loss=SoftmaxCrossEntropy(),
                      validation_data=val, validation_steps=2, verbose=False)
    assert data.served == [0, 1, 2] * 2 + [0, 1]  # 8 steps: the stream goes on across epochs (Keras)
    assert val.served == [0, 1, 2] * 2 + [0, 1]
    assert len(h.val_loss) == 4 and all(np.isfinite(h.val_loss))


def test_validation_defaults_to_one_pass_and_evaluate_generator_weighs_images():
    x, y = _data(10)
    m = _model()
    batches = _batches(x, y, 4)                   # 4, 4, 2 images
    loss, acc = evaluate_generator(m, batches, steps=3)
    want = evaluate(m, (x, y), batch_size=10, transform=lambda v: v)
    assert loss == pytest.approx(want[0], rel=1e-6) and acc == want[1]
    h = fit_generator(m, batches, 3, 1, Adam(m), SoftmaxCrossEntropy(), validation_data=batches, verbose=False)
    after = evaluate(m, (x, y), batch_size=10, transform=lambda v: v)
    assert h.val_loss[0] == pytest.approx(after[0], rel=1e-6)


def test_an_endless_generator_works_and_a_one_shot_one_that_runs_out_is_an_error():
    x, y = _data(16)

    def forever():
        while True:
            yield x[:8], y[:8]

    m = _model()
    fit_generator(m, forever(), 3, 2, Adam(m), SoftmaxCrossEntropy(), verbose=False)
    with pytest.raises(ValueError, match="generator: ran out of batches .*one-shot iterator"):
        fit_generator(m, iter(_batches(x, y, 8)), 3, 1, Adam(m), SoftmaxCrossEntropy(), verbose=False)
    with pytest.raises(ValueError, match="empty iterable"):
        next(endless([]))
    with pytest.raises(ValueError, match="ran out after 1 of steps=2"):
        evaluate_generator(m, iter(_batches(x[:8], y[:8], 8)), steps=2)


@pytest.mark.parametrize("kw, match", [
    (dict(steps_per_epoch=0), "steps_per_epoch: expected a positive int, got 0"),
    (dict(steps_per_epoch=2.5), "steps_per_epoch: expected a positive int"),
    (dict(validation_steps=0, validation_data=[]), "validation_steps: expected a positive int"),
    (dict(epochs=1, initial_epoch=2), "epochs: expected 0 <= initial_epoch <= epochs"),
])
def test_bad_arguments(kw, match):
    x, y = _data(8)
    m = _model()
    args = dict(steps_per_epoch=1, epochs=1, optimizer=Adam(m), loss=SoftmaxCrossEntropy(), verbose=False)
    args.update(kw)
    with pytest.raises(ValueError, match=match):
        fit_generator(m, _batches(x, y, 4), **args)


def test_bad_batches():
    m = _model()
    with pytest.raises(TypeError, match="generator: expected batches \\(images, labels\\)"):
        fit_generator(m, [np.zeros((2, 1, 3, 4), np.float32)], 1, 1, Adam(m), SoftmaxCrossEntropy(), verbose=False)
    with pytest.raises(ValueError, match="a batch of 2 images and 3 labels"):
        fit_generator(m, [(np.zeros((2, 1, 3, 4), np.float32), np.zeros(3, np.int64))], 1, 1, Adam(m),
                      SoftmaxCrossEntropy(), verbose=False)
