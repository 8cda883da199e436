"""Training loop: fit / evaluate / predict, History and callbacks.

Works with any model that has ``forward(x, training)`` / ``backward(grad)``, an
optimizer with ``step()`` (bound to the model's parameters) and a loss with
``forward(logits, labels) -> float`` / ``backward() -> grad_logits``.
Deterministic given ``seed``: the shuffling order, augmentation draws and
dropout masks all come from generators seeded from it.
"""
from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import checkpoint
from .data.augment import to_float

__all__ = [
    "History", "TrainingDiverged", "Callback", "EarlyStopping", "CheckpointBest", "LRSchedule",
    "fit", "evaluate", "predict", "to_float", "epoch_generator", "no_input_grad",
]


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class History:
    """Per-epoch metrics; lists are aligned by epoch."""

    epoch: list = field(default_factory=list)
    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    seconds: list = field(default_factory=list)

    def as_dict(self):
        return {k: list(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, d):
        h = cls()
        for k in h.__dict__:
            getattr(h, k).extend(d.get(k, []))
        return h

    def to_json(self, path):
        with open(path, "w") as f:
            json.dump(self.as_dict(), f, indent=1)


class Callback:
    """Hook into fit(); set ``trainer.stop = True`` to end training after this epoch."""

    def on_train_begin(self, trainer):
        pass

    def on_epoch_begin(self, epoch, trainer):
        pass

    def on_epoch_end(self, epoch, logs, trainer):
        pass


class _Monitor(Callback):
    def __init__(self, monitor, mode):
        if mode not in ("min", "max", "auto"):
            raise ValueError(f"mode: expected 'min', 'max' or 'auto', got {mode!r}")
        self.monitor = monitor
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.best = None

    def _value(self, logs):
        if self.monitor not in logs or logs[self.monitor] is None:
            raise ValueError(f"monitor: {self.monitor!r} is not available (have {sorted(k for k, v in logs.items() if v is not None)}); "
                             "pass validation data to fit() to monitor val_* metrics")
        return logs[self.monitor]

    def _improved(self, value, min_delta=0.0):
        if self.best is None:
            return True
        return value < self.best - min_delta if self.mode == "min" else value > self.best + min_delta


class EarlyStopping(_Monitor):
    """Stop when ``monitor`` has not improved for ``patience`` epochs."""

    def __init__(self, monitor="val_loss", patience=3, min_delta=0.0, mode="auto"):
        super().__init__(monitor, mode)
        self.patience, self.min_delta, self.wait = int(patience), float(min_delta), 0

    def on_epoch_end(self, epoch, logs, trainer):
        value = self._value(logs)
        if self._improved(value, self.min_delta):
            self.best, self.wait = value, 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                trainer.stop = True
                trainer.log(f"early stopping: {self.monitor} did not improve for {self.patience} epochs")


class CheckpointBest(_Monitor):
    """Save a checkpoint (model + optimizer + history) whenever ``monitor`` improves."""

    def __init__(self, path, monitor="val_acc", mode="auto", meta=None):
        super().__init__(monitor, mode)
        self.path, self.meta = path, dict(meta or {})

    def on_epoch_end(self, epoch, logs, trainer):
        value = self._value(logs)
        if self._improved(value):
            self.best = value
            checkpoint.save_checkpoint(self.path, trainer.model, trainer.optimizer,
                            meta={**self.meta, "epoch": epoch + 1, "history": trainer.history.as_dict(),
                                  "monitor": self.monitor, "best": value})


class LRSchedule(Callback):
    """Sets ``optimizer.lr = schedule(epoch)`` at the start of every epoch (epoch counts from 0)."""

    def __init__(self, schedule):
        self.schedule = schedule

    def on_epoch_begin(self, epoch, trainer):
        trainer.optimizer.lr = float(self.schedule(epoch))


def epoch_generator(model, seed, epoch):
    """The generator of epoch ``epoch`` (shuffling, augmentation), derived from (seed, epoch),
    and the model's random layers (Dropout) reseeded from (seed, epoch, 1): resuming at
    epoch k replays exactly what an uninterrupted run would have done."""
    if hasattr(model, "set_rng"):
        model.set_rng(np.random.default_rng([int(seed), int(epoch), 1]))
    return np.random.default_rng([int(seed), int(epoch)])


@contextlib.contextmanager
def no_input_grad(model):
    """Within it, the model's first layer skips the gradient with respect to its input:
    when training, nothing consumes the gradient with respect to the images."""
    saved = getattr(model, "need_input_grad", None)
    if saved is not None:
        model.need_input_grad = False
    try:
        yield model
    finally:
        if saved is not None:
            model.need_input_grad = saved


def _batches(n, batch_size, rng=None):
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for s in range(0, n, batch_size):
        yield order[s:s + batch_size]


def _check_data(data, name):
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise TypeError(f"{name}: expected a pair (images, labels), got {type(data).__name__}")
    x, y = np.asarray(data[0]), np.asarray(data[1])
    if len(x) != len(y):
        raise ValueError(f"{name}: {len(x)} images but {len(y)} labels")
    if len(x) == 0:
        raise ValueError(f"{name}: no samples")
    return x, y


class _Trainer:
    def __init__(self, model, optimizer, verbose):
        self.model, self.optimizer, self.verbose = model, optimizer, verbose
        self.stop = False
        self.history = History()

    def log(self, msg):
        if self.verbose:
            print(msg, file=sys.stderr)


def fit(model, train, epochs, batch_size, optimizer, loss, validation=None, shuffle=True, seed=0,
        callbacks=(), transform=None, augment=None, verbose=True, history=None, initial_epoch=0):
    """Train ``model`` on ``train = (images, labels)`` for ``epochs`` epochs.

    transform(batch) -> float array turns stored images into network input
    (default: uint8 -> [0, 1] float32). augment(batch, rng) runs on training
    batches only, after transform, with a generator seeded from ``seed`` so the
    draws differ per epoch but the run is reproducible. Returns a History.
    """
    x, y = _check_data(train, "train")
    if validation is not None:
        validation = _check_data(validation, "validation")
    epochs, batch_size = int(epochs), int(batch_size)
    if epochs < 0 or batch_size < 1:
        raise ValueError(f"epochs must be >= 0 and batch_size >= 1, got epochs={epochs}, batch_size={batch_size}")
    transform = transform or to_float
    trainer = _Trainer(model, optimizer, verbose)
    if history is not None:
        trainer.history = history
    for cb in callbacks:
        cb.on_train_begin(trainer)
    with no_input_grad(model):
        _run_epochs(model, x, y, epochs, batch_size, optimizer, loss, validation, shuffle, seed, callbacks,
                    transform, augment, initial_epoch, trainer)
    return trainer.history


def _run_epochs(model, x, y, epochs, batch_size, optimizer, loss, validation, shuffle, seed, callbacks, transform,
                augment, initial_epoch, trainer):
    verbose = trainer.verbose
    for epoch in range(initial_epoch, initial_epoch + epochs):
        rng = epoch_generator(model, seed, epoch)
        if hasattr(optimizer, "set_epoch"):
            optimizer.set_epoch(epoch)
        for cb in callbacks:
            cb.on_epoch_begin(epoch, trainer)
        t0 = time.perf_counter()
        total_loss, correct, seen = 0.0, 0, 0
        bar = _progress(len(x), f"epoch {epoch + 1}/{initial_epoch + epochs}", verbose)
        for idx in _batches(len(x), batch_size, rng if shuffle else None):
            xb = transform(x[idx])
            if augment is not None:
                xb = augment(xb, rng)
            yb = y[idx]
            logits = model.forward(xb, training=True)
            batch_loss = float(loss.forward(logits, yb))
            if not math.isfinite(batch_loss):
                bar.close()
                raise TrainingDiverged(
                    f"training diverged at epoch {epoch + 1}, after {seen} samples: loss is {batch_loss}. "
                    f"Lower the learning rate (now {getattr(optimizer, 'lr', '?')}) or check the input scaling.")
            model.backward(loss.backward())
            optimizer.step()
            n = len(idx)
            total_loss += batch_loss * n
            if yb.ndim == 1:
                correct += int(np.count_nonzero(np.argmax(logits, axis=1) == yb))
            seen += n
            elapsed = time.perf_counter() - t0
            bar.update(n, loss=total_loss / seen, acc=correct / seen, rate=seen / max(elapsed, 1e-9))
        bar.close()
        # The loss check above sees each update's effect only at the next batch: the
        # epoch's last update is checked here (weights, then the validation loss).
        params = getattr(model, "params", None)
        bad = [k for k, p in (params.items() if isinstance(params, dict) else ()) if not np.isfinite(p).all()]
        if bad:
            raise TrainingDiverged(
                f"training diverged at epoch {epoch + 1}: the weights {bad[:3]} became NaN or infinite. "
                f"Lower the learning rate (now {getattr(optimizer, 'lr', '?')}) or check the input scaling.")
        logs = {"loss": total_loss / seen, "acc": correct / seen if y.ndim == 1 else None,
                "val_loss": None, "val_acc": None}
        if validation is not None:
            logs["val_loss"], logs["val_acc"] = evaluate(model, validation, batch_size=max(batch_size, 256),
                                                         loss=loss, transform=transform)
            if not math.isfinite(logs["val_loss"]):
                raise TrainingDiverged(
                    f"training diverged at epoch {epoch + 1}: the validation loss is {logs['val_loss']}. "
                    f"Lower the learning rate (now {getattr(optimizer, 'lr', '?')}) or check the input scaling "
                    f"(of the validation images too).")
        seconds = time.perf_counter() - t0
        h = trainer.history
        h.epoch.append(epoch + 1)
        h.train_loss.append(logs["loss"])
        h.train_acc.append(logs["acc"])
        h.val_loss.append(logs["val_loss"])
        h.val_acc.append(logs["val_acc"])
        h.lr.append(getattr(optimizer, "lr", None))
        h.seconds.append(seconds)
        msg = f"epoch {epoch + 1}: loss {logs['loss']:.4f}"
        if logs["acc"] is not None:
            msg += f" acc {logs['acc']:.4f}"
        if validation is not None:
            msg += f" | val_loss {logs['val_loss']:.4f} val_acc {logs['val_acc']:.4f}"
        trainer.log(msg + f" | {seconds:.1f} s ({seen / seconds:.0f} samples/s)")
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs, trainer)
        if trainer.stop:
            break


def predict(model, images, batch_size=256, transform=None):
    """Network outputs (logits) for ``images``, in batches, inference mode."""
    transform = transform or to_float
    images = np.asarray(images)
    outs = [model.forward(transform(images[s:s + batch_size]), training=False)
            for s in range(0, len(images), batch_size)]
    if not outs:
        raise ValueError("images: no samples")
    return np.concatenate(outs)


def evaluate(model, data, batch_size=256, loss=None, transform=None):
    """(mean loss or None, accuracy) of ``model`` on ``data = (images, labels)``."""
    x, y = _check_data(data, "data")
    total, correct = 0.0, 0
    transform = transform or to_float
    for s in range(0, len(x), batch_size):
        logits = model.forward(transform(x[s:s + batch_size]), training=False)
        yb = y[s:s + batch_size]
        if loss is not None:
            total += float(loss.forward(logits, yb)) * len(yb)
        correct += int(np.count_nonzero(np.argmax(logits, axis=1) == yb))
    return (total / len(x) if loss is not None else None), correct / len(x)


class _NoBar:
    def update(self, n, **kw):
        pass

    def close(self):
        pass


class _TqdmBar:
    def __init__(self, total, desc):
        from tqdm import tqdm

        self.bar = tqdm(total=total, desc=desc, unit="img", leave=False, file=sys.stderr, mininterval=0.5)

    def update(self, n, loss, acc, rate):
        self.bar.update(n)
        self.bar.set_postfix(loss=f"{loss:.4f}", acc=f"{acc:.4f}", refresh=False)

    def close(self):
        self.bar.close()


def _progress(total, desc, verbose):
    if not verbose:
        return _NoBar()
    try:
        return _TqdmBar(total, desc)
    except ImportError:
        return _NoBar()
