"""Tests for pyconvnet.training: fit / evaluate / predict, History and the callbacks.

Everything runs on tiny generated 28x28 data sets (a class-dependent bright
square on a noisy background: learnable in a couple of epochs), mostly with
LeNet-5 (no dropout), so the whole file takes a few seconds."""
from __future__ import annotations

import math

import numpy as np
import pytest

from pyconvnet import losses, models, optim
from pyconvnet.training import (CheckpointBest, EarlyStopping, History, LRSchedule, TrainingDiverged, evaluate,
                                fit, predict, to_float)


def toy_data(n=128, seed=0, classes=10):
    """uint8 (n, 1, 28, 28) images: class k is a 6x6 bright square at a position fixed
    per class, on low noise. Labels cycle through the classes."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    rng.shuffle(y)
    x = rng.integers(0, 60, (n, 1, 28, 28)).astype(np.uint8)
    for i, k in enumerate(y):
        r, c = 3 + 12 * (k // 5), 1 + 5 * (k % 5)
        x[i, 0, r:r + 6, c:c + 6] = 255
    return x, y.astype(np.int64)


def lenet(seed=0):
    return models.build("lenet5", (1, 28, 28), seed=seed)


def weights(model):
    return {k: v.copy() for k, v in model.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def history_wo_time(h):
    d = h.as_dict()
    d.pop("seconds"), d.pop("train_seconds")
    return d


def train(model=None, data=None, epochs=2, batch_size=32, lr=0.05, seed=0, **kw):
    model = model if model is not None else lenet()
    data = data if data is not None else toy_data()
    opt = kw.pop("optimizer", None) or optim.SGD(model.parameters(), lr=lr)
    h = fit(model, data, epochs=epochs, batch_size=batch_size, optimizer=opt, loss=losses.SoftmaxCrossEntropy(),
            seed=seed, verbose=False, **kw)
    return model, opt, h


# ------------------------------------------------------------------ fit basics
def test_fit_returns_per_epoch_history():
    x, y = toy_data(128)
    xv, yv = toy_data(40, seed=1)
    _, _, h = train(data=(x, y), epochs=3, validation=(xv, yv))
    assert isinstance(h, History)
    assert h.epoch == [1, 2, 3]
    for name in ("train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds"):
        vals = getattr(h, name)
        assert len(vals) == 3, name
        assert all(isinstance(v, float) and math.isfinite(v) for v in vals), (name, vals)
    assert all(0.0 <= a <= 1.0 for a in h.train_acc + h.val_acc)
    assert h.lr == [0.05] * 3
    # accuracies are fractions of whole samples
    assert all(abs(a * 128 - round(a * 128)) < 1e-9 for a in h.train_acc)
    assert all(abs(a * 40 - round(a * 40)) < 1e-9 for a in h.val_acc)
    # as_dict / from_dict / to_json round trip
    assert History.from_dict(h.as_dict()).as_dict() == h.as_dict()


def test_history_to_json(tmp_path):
    import json

    _, _, h = train(data=toy_data(32), epochs=1)
    h.to_json(tmp_path / "h.json")
    assert json.loads((tmp_path / "h.json").read_text()) == h.as_dict()


def test_fit_without_validation_has_none_val_metrics():
    _, _, h = train(data=toy_data(32), epochs=2)
    assert h.val_loss == [None, None] and h.val_acc == [None, None]


def test_loss_decreases_on_learnable_problem():
    data = toy_data(160)
    model, _, h = train(data=data, epochs=6, batch_size=16, lr=0.05, validation=toy_data(60, seed=3))
    assert h.train_loss[-1] < 0.5 * h.train_loss[0], h.train_loss
    assert h.val_loss[-1] < h.val_loss[0], h.val_loss
    assert h.val_acc[-1] >= 0.8, h.val_acc  # chance is 0.1
    _, acc = evaluate(model, data)
    assert acc >= 0.8


def test_val_metrics_equal_evaluate_after_epoch():
    data, val = toy_data(64), toy_data(30, seed=5)
    model, _, h = train(data=data, epochs=1, validation=val)
    vl, va = evaluate(model, val, loss=losses.SoftmaxCrossEntropy())
    assert h.val_loss[-1] == pytest.approx(vl, rel=1e-6)
    assert h.val_acc[-1] == va


# ------------------------------------------------------------------ determinism
def test_same_seed_bit_identical():
    data, val = toy_data(96), toy_data(20, seed=1)
    m1, _, h1 = train(data=data, epochs=2, seed=7, validation=val)
    m2, _, h2 = train(data=data, epochs=2, seed=7, validation=val)
    assert_same_weights(weights(m1), weights(m2))
    assert history_wo_time(h1) == history_wo_time(h2)


def test_same_seed_bit_identical_with_dropout_and_augment():
    """keras_cnn has two Dropout layers; fit reseeds them per epoch from ``seed``."""
    from pyconvnet.data import random_translate

    data = toy_data(48)
    aug = lambda xb, rng: random_translate(xb, 2, rng)  # noqa: E731
    runs = []
    for _ in range(2):
        m = models.build("keras_cnn", (1, 28, 28), seed=0)
        _, _, h = train(model=m, data=data, epochs=2, batch_size=16, lr=0.01, seed=3, augment=aug)
        runs.append((weights(m), history_wo_time(h)))
    assert_same_weights(runs[0][0], runs[1][0])
    assert runs[0][1] == runs[1][1]


def test_different_seed_differs():
    data = toy_data(96)
    m1, _, _ = train(data=data, epochs=1, seed=0)
    m2, _, _ = train(data=data, epochs=1, seed=1)
    w1, w2 = weights(m1), weights(m2)
    assert any(not np.array_equal(w1[k], w2[k]) for k in w1)


def test_shuffle_false_is_plain_in_order_loop():
    """shuffle=False visits the batches in order and ignores the seed (no dropout,
    no augment): it equals a hand-written loop bit for bit."""
    data = toy_data(80)
    m1, _, _ = train(data=data, epochs=2, batch_size=24, seed=0, shuffle=False)
    m2, _, _ = train(data=data, epochs=2, batch_size=24, seed=123, shuffle=False)
    assert_same_weights(weights(m1), weights(m2))

    m3 = lenet()
    opt, loss = optim.SGD(m3.parameters(), lr=0.05), losses.SoftmaxCrossEntropy()
    x, y = data
    for _ in range(2):
        for s in range(0, len(x), 24):  # last batch has 8 samples
            loss.forward(m3.forward(to_float(x[s:s + 24]), training=True), y[s:s + 24])
            m3.backward(loss.backward())
            opt.step()
    assert_same_weights(weights(m1), weights(m3))
    # and shuffling does change the result
    m4, _, _ = train(data=data, epochs=2, batch_size=24, seed=0, shuffle=True)
    assert any(not np.array_equal(a, b) for a, b in zip(weights(m1).values(), weights(m4).values()))


def test_fit_restores_need_input_grad():
    model = lenet()
    assert model.need_input_grad is True
    train(model=model, data=toy_data(32), epochs=1)
    assert model.need_input_grad is True
    # the model still returns input gradients afterwards
    x = to_float(toy_data(4)[0])
    y = model.forward(x, training=True)
    gx = model.backward(np.ones_like(y))
    assert gx is not None and gx.shape == x.shape


def test_epochs_zero_returns_empty_history():
    model = lenet()
    w0 = weights(model)
    _, _, h = train(model=model, data=toy_data(16), epochs=0)
    assert h.epoch == [] and h.train_loss == []
    assert_same_weights(w0, weights(model))


# ------------------------------------------------------------------ callbacks
class _FakeTrainer:
    def __init__(self, model=None, optimizer=None):
        self.stop = False
        self.model, self.optimizer = model, optimizer
        self.history = History()
        self.messages = []

    def log(self, msg):
        self.messages.append(msg)


def test_early_stopping_patience_unit():
    es = EarlyStopping(monitor="val_loss", patience=2)
    t = _FakeTrainer()
    seq = [1.0, 0.9, 0.95, 0.91, 0.8]
    stopped_at = None
    for e, v in enumerate(seq):
        es.on_epoch_end(e, {"val_loss": v}, t)
        if t.stop:
            stopped_at = e
            break
    assert stopped_at == 3  # two epochs without improving on 0.9
    assert es.best == 0.9
    assert "early stopping" in t.messages[-1]


def test_early_stopping_min_delta_and_mode():
    es = EarlyStopping(monitor="val_acc", patience=1, min_delta=0.05)
    assert es.mode == "max"
    t = _FakeTrainer()
    es.on_epoch_end(0, {"val_acc": 0.5}, t)
    es.on_epoch_end(1, {"val_acc": 0.53}, t)  # not better by min_delta
    assert t.stop
    with pytest.raises(ValueError, match="mode"):
        EarlyStopping(mode="up")


def test_early_stopping_stops_fit():
    """lr = 0: nothing changes, so val_loss improves only at epoch 1; patience 2 -> 3 epochs."""
    model = lenet()
    _, _, h = train(model=model, data=toy_data(32), epochs=10, lr=0.0, validation=toy_data(16, seed=1),
                    callbacks=[EarlyStopping(monitor="val_loss", patience=2)])
    assert h.epoch == [1, 2, 3]


def test_early_stopping_needs_validation():
    with pytest.raises(ValueError, match="val_loss.*validation"):
        train(data=toy_data(16), epochs=1, callbacks=[EarlyStopping(monitor="val_loss")])


def test_checkpoint_best_writes_only_on_improvement(tmp_path, monkeypatch):
    from pyconvnet import checkpoint

    model = lenet()
    opt = optim.SGD(model.parameters(), lr=0.1)
    calls = []
    real = checkpoint.save_checkpoint

    def spy(path, *a, **kw):
        calls.append(kw["meta"]["epoch"])
        return real(path, *a, **kw)

    monkeypatch.setattr(checkpoint, "save_checkpoint", spy)
    path = tmp_path / "best.npz"
    cb = CheckpointBest(path, monitor="val_acc", meta={"note": "x"})
    t = _FakeTrainer(model, opt)
    for e, acc in enumerate([0.5, 0.4, 0.6, 0.6, 0.55]):
        t.history.epoch.append(e + 1)
        cb.on_epoch_end(e, {"val_acc": acc, "val_loss": 1.0}, t)
    assert calls == [1, 3]
    ck = checkpoint.load_checkpoint(path)
    assert ck.meta["epoch"] == 3 and ck.meta["best"] == 0.6 and ck.meta["monitor"] == "val_acc"
    assert ck.meta["note"] == "x" and ck.meta["history"]["epoch"] == [1, 2, 3]


def test_checkpoint_best_in_fit(tmp_path):
    """lr = 0: val_acc never changes after epoch 1, so the file is written once."""
    path = tmp_path / "best.npz"
    model, _, h = train(data=toy_data(32), epochs=3, lr=0.0, validation=toy_data(16, seed=1),
                        callbacks=[CheckpointBest(path, monitor="val_loss")])
    from pyconvnet.checkpoint import load_checkpoint

    ck = load_checkpoint(path)
    assert ck.meta["epoch"] == 1
    assert len(h.epoch) == 3
    x = to_float(toy_data(8, seed=2)[0])
    np.testing.assert_array_equal(predict(ck.model, x), predict(model, x))


def test_lr_schedule_sets_lr_per_epoch():
    _, opt, h = train(data=toy_data(32), epochs=3, lr=0.1, callbacks=[LRSchedule(lambda e: 0.1 * 0.5 ** e)])
    assert h.lr == [0.1, 0.05, 0.025]
    assert opt.lr == 0.025


def test_lr_schedule_is_applied_to_the_updates():
    """lr 0 from epoch 2 on: 3 epochs end with the weights after epoch 1."""
    data = toy_data(48)
    sched = LRSchedule(lambda e: 0.05 if e == 0 else 0.0)
    m1, _, _ = train(data=data, epochs=3, callbacks=[sched], seed=4)
    m2, _, _ = train(data=data, epochs=1, seed=4)
    assert_same_weights(weights(m1), weights(m2))


def test_callback_hook_order():
    from pyconvnet.training import Callback

    events = []

    class Rec(Callback):
        def on_train_begin(self, trainer):
            events.append("begin")

        def on_epoch_begin(self, epoch, trainer):
            events.append(("eb", epoch))

        def on_epoch_end(self, epoch, logs, trainer):
            events.append(("ee", epoch, sorted(logs)))
            if epoch == 1:
                trainer.stop = True

    _, _, h = train(data=toy_data(16), epochs=5, callbacks=[Rec()])
    keys = ["acc", "loss", "val_acc", "val_loss"]
    assert events == ["begin", ("eb", 0), ("ee", 0, keys), ("eb", 1), ("ee", 1, keys)]
    assert h.epoch == [1, 2]


# ------------------------------------------------------------------ divergence
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_huge_lr_raises():
    model = lenet()
    with pytest.raises(TrainingDiverged, match=r"diverged at epoch 1.*loss is (nan|inf).*learning rate"):
        train(model=model, data=toy_data(64), epochs=2, batch_size=8, lr=1e6)
    assert model.need_input_grad is True


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_on_the_last_step_is_not_silent():
    """One batch per epoch: the update that blows the weights up is the last one of the
    run, so no later training loss sees it; the validation loss (or the weights) must."""
    with pytest.raises(TrainingDiverged, match="epoch 1: the validation loss is nan"):
        train(data=toy_data(32), epochs=1, batch_size=32, lr=1e10, validation=toy_data(16, seed=1))
    # no validation data: the weights themselves are checked at the end of the epoch
    with pytest.raises(TrainingDiverged, match=r"weights \['layers\.0\.weight'.*NaN or infinite"):
        train(data=toy_data(32), epochs=1, batch_size=32, lr=1e300)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_inf_input_raises():
    x, y = toy_data(32)
    xf = to_float(x)
    xf[5, 0, 3, 3] = np.inf
    with pytest.raises(TrainingDiverged, match=r"loss is (nan|inf)"):
        train(data=(xf, y), epochs=1, batch_size=8)


def test_tiny_lr_does_not_raise():
    _, _, h = train(data=toy_data(32), epochs=1, lr=1e-3)
    assert math.isfinite(h.train_loss[0])


# ------------------------------------------------------------------ augment / transform
def test_augment_called_only_on_training_batches():
    calls = []

    def aug(xb, rng):
        assert isinstance(rng, np.random.Generator)
        assert xb.dtype == np.float32 and xb.max() <= 1.0  # after transform
        calls.append(len(xb))
        return xb

    model, _, _ = train(data=toy_data(50), epochs=2, batch_size=16, augment=aug, validation=toy_data(37, seed=1))
    assert calls == [16, 16, 16, 2] * 2
    n = len(calls)
    evaluate(model, toy_data(37, seed=1))
    predict(model, toy_data(5)[0])
    assert len(calls) == n


def test_augment_output_is_what_trains():
    data = toy_data(32)
    m1, _, _ = train(data=data, epochs=1, augment=lambda xb, rng: xb)
    m2, _, _ = train(data=data, epochs=1)
    assert_same_weights(weights(m1), weights(m2))
    m3, _, _ = train(data=data, epochs=1, augment=lambda xb, rng: np.zeros_like(xb))
    assert any(not np.array_equal(a, b) for a, b in zip(weights(m1).values(), weights(m3).values()))


def test_transform_is_used_for_train_and_validation():
    seen = []

    def tf(xb):
        seen.append(len(xb))
        return to_float(xb)

    train(data=toy_data(20), epochs=1, batch_size=8, transform=tf, validation=toy_data(7, seed=1))
    assert seen == [8, 8, 4, 7]


def test_to_float():
    x = np.array([0, 51, 255], np.uint8)
    np.testing.assert_allclose(to_float(x), [0.0, 0.2, 1.0], rtol=1e-6)
    assert to_float(x).dtype == np.float32
    f = np.array([0.5], np.float64)
    assert to_float(f).dtype == np.float32
    assert to_float(f, np.float64) is f


# ------------------------------------------------------------------ bad arguments
@pytest.mark.parametrize("kw, exc, match", [
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=-3), ValueError, "batch_size"),
    (dict(epochs=-1), ValueError, "epochs"),
])
def test_fit_bad_numbers(kw, exc, match):
    args = dict(epochs=1, batch_size=8)
    args.update(kw)
    model = lenet()
    with pytest.raises(exc, match=match):
        fit(model, toy_data(16), optimizer=optim.SGD(model.parameters(), lr=0.1), loss=losses.SoftmaxCrossEntropy(),
            verbose=False, **args)


def test_fit_bad_data():
    model = lenet()
    opt, loss = optim.SGD(model.parameters(), lr=0.1), losses.SoftmaxCrossEntropy()
    x, y = toy_data(16)
    with pytest.raises(ValueError, match="train: 16 images but 15 labels"):
        fit(model, (x, y[:15]), 1, 8, opt, loss, verbose=False)
    with pytest.raises(ValueError, match="validation: 16 images but 3 labels"):
        fit(model, (x, y), 1, 8, opt, loss, validation=(x, y[:3]), verbose=False)
    with pytest.raises(ValueError, match="no samples"):
        fit(model, (x[:0], y[:0]), 1, 8, opt, loss, verbose=False)
    with pytest.raises(TypeError, match="pair"):
        fit(model, x, 1, 8, opt, loss, verbose=False)
    with pytest.raises(TypeError, match="pair"):
        fit(model, (x, y, y), 1, 8, opt, loss, verbose=False)


def test_fit_verbose_logs_to_stderr(capsys):
    model = lenet()
    fit(model, toy_data(16), 1, 8, optim.SGD(model.parameters(), lr=0.01), losses.SoftmaxCrossEntropy(),
        validation=toy_data(8, seed=1), verbose=True)
    out, err = capsys.readouterr()
    assert out == ""
    assert "epoch 1: loss" in err and "val_acc" in err


# ------------------------------------------------------------------ evaluate / predict
@pytest.fixture(scope="module")
def trained():
    model, _, _ = train(data=toy_data(96), epochs=2)
    return model


def test_predict_shape_and_batching(trained):
    x, _ = toy_data(37, seed=9)
    p256 = predict(trained, x)
    assert p256.shape == (37, 10) and p256.dtype == np.float32
    p1 = predict(trained, x, batch_size=1)
    p5 = predict(trained, x, batch_size=5)
    # Equal up to float32 rounding, not bit for bit: BLAS sums a 1-row product in a
    # different order than a many-row one (measured: ~1e-6 relative on these logits).
    for p in (p1, p5):
        np.testing.assert_allclose(p, p256, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(np.argmax(p, axis=1), np.argmax(p256, axis=1))
    # the same batching twice is bit-identical
    np.testing.assert_array_equal(predict(trained, x, batch_size=5), p5)
    # uint8 input equals the same images given as [0, 1] floats
    np.testing.assert_array_equal(predict(trained, to_float(x)), p256)


def test_predict_is_inference_mode():
    """keras_cnn has dropout: predict must be deterministic (training=False)."""
    m = models.build("keras_cnn", (1, 28, 28))
    x = toy_data(4)[0]
    np.testing.assert_array_equal(predict(m, x), predict(m, x))


def test_predict_empty_raises(trained):
    with pytest.raises(ValueError, match="no samples"):
        predict(trained, np.zeros((0, 1, 28, 28), np.uint8))


def test_evaluate_batching_and_values(trained):
    data = toy_data(37, seed=9)
    loss = losses.SoftmaxCrossEntropy()
    l1, a1 = evaluate(trained, data, batch_size=1, loss=loss)
    l256, a256 = evaluate(trained, data, batch_size=256, loss=loss)
    assert a1 == a256
    assert l1 == pytest.approx(l256, rel=1e-6)
    logits = predict(trained, data[0])
    assert a256 == np.mean(np.argmax(logits, axis=1) == data[1])
    assert l256 == pytest.approx(float(losses.SoftmaxCrossEntropy().forward(logits, data[1])), rel=1e-6)
    # no loss given: softmax cross-entropy, the zoo's training loss (Keras reports the loss too)
    default_loss, acc = evaluate(trained, data)
    assert default_loss == l256 and acc == a256


def test_evaluate_bad_data(trained):
    x, y = toy_data(8)
    with pytest.raises(ValueError, match="8 images but 7 labels"):
        evaluate(trained, (x, y[:7]))


# ------------------------------------------------------------------ Keras's epochs, validation split, modes
def test_epochs_is_the_final_epoch_as_in_keras():
    """fit(initial_epoch=1, epochs=2) trains one epoch, the second (Keras); it equals the
    second epoch of an uninterrupted fit(epochs=2)."""
    data = toy_data(48)
    straight, _, h2 = train(model=lenet(), data=data, epochs=2, seed=3)
    resumed, opt, h1 = train(model=lenet(), data=data, epochs=1, seed=3)
    h = fit(resumed, data, epochs=2, batch_size=32, optimizer=opt, loss=losses.SoftmaxCrossEntropy(), seed=3,
            verbose=False, initial_epoch=1)
    assert h.epoch == [2]
    assert_same_weights(weights(resumed), weights(straight))
    # epochs == initial_epoch: nothing to do; before it: an error that says what epochs means
    assert fit(resumed, data, 2, 32, opt, losses.SoftmaxCrossEntropy(), verbose=False, initial_epoch=2).epoch == []
    with pytest.raises(ValueError, match=r"epochs: 1 is before initial_epoch=2; epochs is the index of the final "
                                         r"epoch \(Keras\), so to train 1 more pass epochs=3"):
        fit(resumed, data, 1, 32, opt, losses.SoftmaxCrossEntropy(), verbose=False, initial_epoch=2)


def test_split_validation_holds_out_the_last_fraction():
    from pyconvnet.training import split_validation

    x, y = toy_data(40)
    (xt, yt), (xv, yv) = split_validation((x, y), 0.25)
    assert len(xt) == 30 and len(xv) == 10
    np.testing.assert_array_equal(xv, x[30:])
    np.testing.assert_array_equal(yt, y[:30])
    assert split_validation((x, y), 0.0)[1] is None
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match=r"^validation_split: expected a fraction in \[0, 1\)"):
            split_validation((x, y), bad)
    with pytest.raises(ValueError, match="leaves 0 for validation"):
        split_validation((x[:3], y[:3]), 0.1)


def test_fit_validation_split_equals_explicit_validation():
    data = toy_data(40)
    m1, _, h1 = train(data=data, epochs=1, validation_split=0.25)
    m2, _, h2 = train(data=(data[0][:30], data[1][:30]), epochs=1, validation=(data[0][30:], data[1][30:]))
    assert_same_weights(weights(m1), weights(m2))
    assert history_wo_time(h1) == history_wo_time(h2)
    with pytest.raises(ValueError, match="give at most one"):
        train(data=data, epochs=1, validation_split=0.25, validation=data)


def test_samples_per_second_counts_training_steps_only(capsys):
    """The validation pass is in the epoch's seconds, not in train_seconds, which the
    printed samples/s divides by."""
    import re

    model = lenet()
    h = fit(model, toy_data(32), 1, 16, optim.SGD(model.parameters(), lr=0.01), losses.SoftmaxCrossEntropy(),
            validation=toy_data(600, seed=1), verbose=True)
    assert h.train_seconds[0] < h.seconds[0]
    rate = float(re.search(r"\(([\d.]+) samples/s training\)", capsys.readouterr().err).group(1))
    assert rate == pytest.approx(32 / h.train_seconds[0], rel=0.01, abs=1)


def test_fit_trains_in_train_mode_and_restores_the_mode():
    m = models.build("keras_cnn", (1, 28, 28))
    modes = []

    class Spy(LRSchedule):  # records the model's mode while fit runs
        def on_epoch_begin(self, epoch, trainer):
            modes.append(trainer.model.training)

    assert m.training is False  # a new model starts in eval mode: m(x) == m.forward(x)
    train(model=m, data=toy_data(16), epochs=1, callbacks=[Spy(None)])
    assert modes == [True] and m.training is False
    m.train()
    train(model=m, data=toy_data(16), epochs=1)
    assert m.training is True


def test_monitors_resume_from_the_history(tmp_path):
    """CheckpointBest and EarlyStopping given a resumed history start from its best value:
    a worse first resumed epoch writes no best.npz and counts toward the patience."""
    t = _FakeTrainer(model=lenet())
    t.optimizer = optim.SGD(t.model.parameters(), lr=0.1)
    t.history.val_acc.extend([0.5, 0.9, 0.8])
    t.history.val_loss.extend([1.0, 0.4, 0.6])
    cb = CheckpointBest(tmp_path / "best.npz", monitor="val_acc")
    cb.on_train_begin(t)
    assert cb.best == 0.9
    cb.on_epoch_end(3, {"val_acc": 0.85}, t)
    assert not (tmp_path / "best.npz").exists()
    cb.on_epoch_end(4, {"val_acc": 0.95}, t)
    assert (tmp_path / "best.npz").exists()
    es = EarlyStopping(monitor="val_loss", patience=2)
    es.on_train_begin(t)
    assert es.best == 0.4 and es.wait == 1  # one epoch (0.6) since the best
    es.on_epoch_end(3, {"val_loss": 0.5}, t)
    assert t.stop


def test_global_seed_makes_unseeded_runs_reproducible():
    """pyconvnet.manual_seed: layers built without rng/seed, Dropout without seed and fit
    without seed all draw from it."""
    import pyconvnet
    from pyconvnet import layers as L

    def run():
        pyconvnet.manual_seed(11)
        m = L.Sequential(L.Flatten(), L.Linear(784, 32), L.ReLU(), L.Dropout(0.3), L.Linear(32, 10))
        fit(m, toy_data(32), 1, 8, optim.SGD(m.parameters(), lr=0.05), losses.SoftmaxCrossEntropy(), verbose=False)
        return weights(m)

    a, b = run(), run()
    assert_same_weights(a, b)
    pyconvnet.manual_seed(12)
    c = L.Linear(784, 32)
    assert not np.array_equal(c.params["weight"], a["layers.1.weight"])
    with pytest.raises(ValueError, match="^seed: expected a non-negative int"):
        pyconvnet.manual_seed(-1)
    with pytest.raises(TypeError, match="^seed"):
        pyconvnet.manual_seed(1.5)
