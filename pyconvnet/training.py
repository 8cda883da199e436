"""Training loop: fit / evaluate / predict, History and callbacks.

Works with any model that has ``forward(x, training)`` / ``backward(grad)``, an
optimizer with ``step()`` (bound to the model's parameters) and a loss with
``forward(logits, labels) -> float`` / ``backward() -> grad_logits``.
Deterministic given ``seed``: the shuffling order, augmentation draws and
dropout masks all come from generators seeded from it (``seed=None``: one drawn
from the global generator of ``pyconvnet.manual_seed``).

``fit(..., epochs, initial_epoch)`` follows Keras: ``epochs`` is the index of the
final epoch, so ``fit(initial_epoch=1, epochs=2)`` trains one epoch, the second.
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
from ._random import draw_seed
from .memory import cached_allocations
from .data.augment import to_float
from .losses import SoftmaxCrossEntropy

__all__ = [
    "History", "TrainingDiverged", "Callback", "EarlyStopping", "CheckpointBest", "LRSchedule",
    "fit", "evaluate", "predict", "to_float", "epoch_generator", "no_input_grad", "split_validation",
    "fit_generator", "evaluate_generator", "endless",
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
    seconds: list = field(default_factory=list)  # the whole epoch, validation included
    train_seconds: list = field(default_factory=list)  # the training steps only (what samples/s counts)

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


# fit's logs -> History fields
_HISTORY_KEYS = {"loss": "train_loss", "acc": "train_acc", "val_loss": "val_loss", "val_acc": "val_acc"}


class _Monitor(Callback):
    min_delta = 0.0

    def __init__(self, monitor, mode):
        if mode not in ("min", "max", "auto"):
            raise ValueError(f"mode: expected 'min', 'max' or 'auto', got {mode!r}")
        self.monitor = monitor
        self.mode = ("max" if "acc" in monitor else "min") if mode == "auto" else mode
        self.best = None

    def on_train_begin(self, trainer):
        """A resumed run (fit(history=...)) starts from the best value already in its history
        (else the first resumed epoch would always count as an improvement)."""
        self.best, self.epochs_since_best = None, 0
        for v in getattr(trainer.history, _HISTORY_KEYS.get(self.monitor, ""), []):
            if v is None:
                continue
            if self._improved(v, self.min_delta):
                self.best, self.epochs_since_best = v, 0
            else:
                self.epochs_since_best += 1

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

    def on_train_begin(self, trainer):
        super().on_train_begin(trainer)
        self.wait = self.epochs_since_best

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
            if not getattr(trainer, "writes", True):  # another rank of a distributed run: rank 0 writes
                return
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


def split_validation(data, fraction):
    """(train, validation) pairs: the LAST ``fraction`` of ``data = (images, labels)`` held
    out, as Keras's validation_split (taken before any shuffling, so the same data and
    fraction always hold out the same samples: a resumed run validates on the same ones).
    fraction 0 gives (data, None)."""
    x, y = _check_data(data, "data")
    fraction = float(fraction)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation_split: expected a fraction in [0, 1), got {fraction}")
    n_val = int(round(len(x) * fraction))
    if fraction == 0.0:
        return (x, y), None
    if n_val < 1 or n_val >= len(x):
        raise ValueError(f"validation_split: {fraction} of {len(x)} samples leaves {n_val} for validation and "
                         f"{len(x) - n_val} for training; both need at least one")
    return (x[:-n_val], y[:-n_val]), (x[-n_val:], y[-n_val:])


class _Trainer:
    def __init__(self, model, optimizer, verbose, writes=True):
        self.model, self.optimizer, self.verbose = model, optimizer, verbose
        self.writes = writes  # False on the ranks of a distributed run other than 0: they write no files
        self.stop = False
        self.history = History()

    def log(self, msg):
        if self.verbose:
            print(msg, file=sys.stderr)


def fit(model, train, epochs, batch_size, optimizer, loss, validation=None, shuffle=True, seed=None,
        callbacks=(), transform=None, augment=None, verbose=True, history=None, initial_epoch=0,
        validation_split=0.0, distributed=None):
    """Train ``model`` on ``train = (images, labels)`` up to epoch ``epochs``.

    As in Keras, ``epochs`` is the index of the final epoch and ``initial_epoch`` the
    number already done: epochs ``initial_epoch + 1 .. epochs`` are trained (none when
    they are equal). To resume a run, pass the checkpoint's epoch as ``initial_epoch``,
    its history as ``history`` and the same ``seed``.

    validation: a pair (images, labels) evaluated after every epoch (val_loss, val_acc,
    what EarlyStopping / CheckpointBest monitor); or ``validation_split`` in [0, 1): the
    last fraction of ``train`` held out for it (:func:`split_validation`).
    transform(batch) -> float array turns stored images into network input
    (default: uint8 -> [0, 1] float32). augment(batch, rng) runs on training
    batches only, after transform, with a generator seeded from ``seed`` (None: drawn
    from the global generator of ``pyconvnet.manual_seed``) so the draws differ per
    epoch but the run is reproducible. The model is in training mode (``train()``)
    during the call and back in the mode it had afterwards. Returns a History.

    distributed: a :class:`pyconvnet.distributed.Communicator` for data-parallel training
    (every rank calls fit with the same arguments; ``batch_size`` is the GLOBAL batch,
    split over the ranks): rank 0's weights are broadcast first, gradients are summed
    over the ranks every step, validation is sharded and reduced, only rank 0 prints.
    Callbacks run on every rank with the same logs; CheckpointBest writes on rank 0 only
    (``trainer.writes``), and a callback of yours that writes files should check it too. None (default): one process, and mpi4py is never imported.
    """
    x, y = _check_data(train, "train")
    if validation_split:
        if validation is not None:
            raise ValueError("validation / validation_split: give at most one of them")
        (x, y), validation = split_validation((x, y), validation_split)
    if validation is not None:
        validation = _check_data(validation, "validation")
    epochs, batch_size, initial_epoch = int(epochs), int(batch_size), int(initial_epoch)
    if epochs < 0 or batch_size < 1 or initial_epoch < 0:
        raise ValueError(f"epochs and initial_epoch must be >= 0 and batch_size >= 1, got epochs={epochs}, "
                         f"initial_epoch={initial_epoch}, batch_size={batch_size}")
    if epochs < initial_epoch:
        raise ValueError(f"epochs: {epochs} is before initial_epoch={initial_epoch}; epochs is the index of the "
                         f"final epoch (Keras), so to train {epochs} more pass epochs={initial_epoch + epochs}")
    seed = draw_seed() if seed is None else int(seed)
    transform = transform or to_float
    if distributed is not None:
        distributed.broadcast_model(model)
        verbose = verbose and distributed.rank == 0
    trainer = _Trainer(model, optimizer, verbose, writes=distributed is None or distributed.rank == 0)
    if history is not None:
        trainer.history = history
    for cb in callbacks:
        cb.on_train_begin(trainer)
    was_training = getattr(model, "training", None)
    if hasattr(model, "train"):
        model.train()
    try:
        # freed activations and gradients serve the next step (no fresh pages to fault in)
        with no_input_grad(model), cached_allocations():
            for epoch in range(initial_epoch, epochs):
                rng = epoch_generator(model, seed, epoch)
                if hasattr(optimizer, "set_epoch"):
                    optimizer.set_epoch(epoch)
                for cb in callbacks:
                    cb.on_epoch_begin(epoch, trainer)
                t0 = time.perf_counter()
                logs, samples, train_seconds = _train_epoch(model, x, y, batch_size, optimizer, loss, shuffle,
                                                            transform, augment, rng, f"epoch {epoch + 1}/{epochs}",
                                                            verbose, epoch, distributed)
                if distributed is not None:
                    distributed.average_buffers(model)
                if validation is not None:
                    logs["val_loss"], logs["val_acc"] = _validate(model, validation, batch_size, loss, transform,
                                                                  optimizer, epoch, distributed)
                _record(trainer, epoch, logs, optimizer, samples, train_seconds, time.perf_counter() - t0)
                for cb in callbacks:
                    cb.on_epoch_end(epoch, logs, trainer)
                if trainer.stop:
                    break
    finally:
        if was_training is not None and hasattr(model, "train"):
            model.train(was_training)
    return trainer.history


def _diverged(epoch, what, optimizer, extra=""):
    return TrainingDiverged(f"training diverged at epoch {epoch + 1}{what}. Lower the learning rate (now "
                            f"{getattr(optimizer, 'lr', '?')}) or check the input scaling{extra}.")


def _train_epoch(model, x, y, batch_size, optimizer, loss, shuffle, transform, augment, rng, desc, verbose,
                 epoch, comm=None):
    """One pass of training steps over (x, y); returns (logs, samples seen, seconds of the steps).
    comm (a distributed.Communicator): this rank trains on its share of every batch."""
    t0 = time.perf_counter()
    total_loss, correct, seen = 0.0, 0, 0
    bar = _progress(len(x), desc, verbose)
    for idx in _batches(len(x), batch_size, rng if shuffle else None):
        n = len(idx)
        if comm is not None:
            # augmentation draws for the whole batch on every rank: the draws of one process
            lo, hi = comm.bounds(n)
            xb = augment(transform(x[idx]), rng)[lo:hi] if augment is not None else transform(x[idx[lo:hi]])
            batch_loss, batch_correct = comm.train_step(model, loss, xb, y[idx[lo:hi]], lo, n)
            if not math.isfinite(batch_loss):
                bar.close()
                raise _diverged(epoch, f", after {seen} samples: loss is {batch_loss}", optimizer)
            optimizer.step()
            total_loss += batch_loss * n
            correct += batch_correct
            seen += n
            elapsed = time.perf_counter() - t0
            bar.update(n, loss=total_loss / seen, acc=correct / seen, rate=seen / max(elapsed, 1e-9))
            continue
        xb = transform(x[idx])
        if augment is not None:
            xb = augment(xb, rng)
        yb = y[idx]
        logits = model.forward(xb, training=True)
        batch_loss = float(loss.forward(logits, yb))
        if not math.isfinite(batch_loss):
            bar.close()
            raise _diverged(epoch, f", after {seen} samples: loss is {batch_loss}", optimizer)
        model.backward(loss.backward())
        optimizer.step()
        total_loss += batch_loss * n
        if yb.ndim == 1:
            correct += int(np.count_nonzero(np.argmax(logits, axis=1) == yb))
        seen += n
        elapsed = time.perf_counter() - t0
        bar.update(n, loss=total_loss / seen, acc=correct / seen, rate=seen / max(elapsed, 1e-9))
    bar.close()
    train_seconds = time.perf_counter() - t0
    # The loss check above sees each update's effect only at the next batch: the
    # epoch's last update is checked here (weights, then the validation loss).
    params = getattr(model, "params", None)
    bad = [k for k, p in (params.items() if isinstance(params, dict) else ()) if not np.isfinite(p).all()]
    if bad:
        raise _diverged(epoch, f": the weights {bad[:3]} became NaN or infinite", optimizer)
    logs = {"loss": total_loss / seen, "acc": correct / seen if y.ndim == 1 else None, "val_loss": None,
            "val_acc": None}
    return logs, seen, train_seconds


def _validate(model, validation, batch_size, loss, transform, optimizer, epoch, comm=None):
    """(val_loss, val_acc) after an epoch (sharded over comm's ranks when given); a non-finite loss is divergence."""
    val_loss, val_acc = (evaluate if comm is None else comm.evaluate)(
        model, validation, batch_size=max(batch_size, 256), loss=loss, transform=transform)
    if not math.isfinite(val_loss):
        raise _diverged(epoch, f": the validation loss is {val_loss}", optimizer, " (of the validation images too)")
    return val_loss, val_acc


def _record(trainer, epoch, logs, optimizer, samples, train_seconds, seconds):
    """Appends the epoch to the history and logs its line (samples/s: training steps only)."""
    h = trainer.history
    h.epoch.append(epoch + 1)
    h.train_loss.append(logs["loss"])
    h.train_acc.append(logs["acc"])
    h.val_loss.append(logs["val_loss"])
    h.val_acc.append(logs["val_acc"])
    h.lr.append(getattr(optimizer, "lr", None))
    h.seconds.append(seconds)
    h.train_seconds.append(train_seconds)
    msg = f"epoch {epoch + 1}: loss {logs['loss']:.4f}"
    if logs["acc"] is not None:
        msg += f" acc {logs['acc']:.4f}"
    if logs["val_loss"] is not None:
        msg += f" | val_loss {logs['val_loss']:.4f} val_acc {logs['val_acc']:.4f}"
    rate = samples / max(train_seconds, 1e-9)
    trainer.log(msg + f" | {seconds:.1f} s ({rate:.0f} samples/s training)")


def endless(batches, name="generator"):
    """Batches of ``batches`` without end, as Keras's data generators (``flow_from_directory``)
    loop forever: a re-iterable (an :class:`~pyconvnet.data.ImageFolder`, a list) is started
    again each time it runs out (a shuffled one in a new order); a one-shot iterator that runs
    out is a ValueError (pass an endless one, or a re-iterable)."""
    while True:
        it = iter(batches)
        one_shot = it is batches
        got = False
        for b in it:
            got = True
            yield b
        if one_shot or not got:
            raise ValueError(f"{name}: ran out of batches ({'an empty iterable' if not got else 'a one-shot iterator'}"
                             f"); fit_generator draws steps_per_epoch batches every epoch: pass a re-iterable "
                             f"(ImageFolder, a list of batches) or a generator that never ends")


def _batch_pair(b, name):
    if not (isinstance(b, (tuple, list)) and len(b) == 2):
        raise TypeError(f"{name}: expected batches (images, labels), got {type(b).__name__}")
    x, y = np.asarray(b[0]), np.asarray(b[1])
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"{name}: a batch of {len(x)} images and {len(y)} labels (expected as many, at least one)")
    return x, y


def _steps(value, name, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or int(value) < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")
    return int(value)


def fit_generator(model, generator, steps_per_epoch, epochs, optimizer, loss, validation_data=None,
                  validation_steps=None, callbacks=(), transform=None, seed=None, verbose=True, history=None,
                  initial_epoch=0):
    """Keras's ``fit_generator``: train on batches drawn from ``generator`` (the Kyoto Univ.
    exercise §6.5 B2 streams face images from folders this way, too many to hold in memory).

    generator: an iterable of ``(images, labels)`` batches, e.g. an
    :class:`~pyconvnet.data.ImageFolder`; it is drawn from without end (:func:`endless`), each
    epoch taking the next ``steps_per_epoch`` batches. validation_data: the same for
    validation, ``validation_steps`` batches after every epoch (default: one pass of it, its
    ``len()``); val_loss / val_acc are the means over those images. transform(batch) -> network
    input (default: the batches as they come, as float arrays). ``epochs`` / ``initial_epoch``
    as :func:`fit` (Keras: the index of the final epoch). Dropout masks are reseeded from
    ``seed`` per epoch; the order of the batches is the generator's. Returns a History."""
    steps_per_epoch = _steps(steps_per_epoch, "steps_per_epoch")
    epochs, initial_epoch = int(epochs), int(initial_epoch)
    if epochs < 0 or initial_epoch < 0 or epochs < initial_epoch:
        raise ValueError(f"epochs: expected 0 <= initial_epoch <= epochs (Keras: epochs is the index of the final "
                         f"epoch), got epochs={epochs}, initial_epoch={initial_epoch}")
    if validation_data is not None:
        if validation_steps is None:
            try:
                validation_steps = len(validation_data)
            except TypeError:
                raise ValueError("validation_steps: required when validation_data has no len()") from None
        validation_steps = _steps(validation_steps, "validation_steps")
        val_stream = endless(validation_data, "validation_data")
    transform = transform or (lambda b: np.asarray(b))
    seed = draw_seed() if seed is None else int(seed)
    stream = endless(generator, "generator")
    trainer = _Trainer(model, optimizer, verbose)
    if history is not None:
        trainer.history = history
    for cb in callbacks:
        cb.on_train_begin(trainer)
    was_training = getattr(model, "training", None)
    if hasattr(model, "train"):
        model.train()
    try:
        with no_input_grad(model), cached_allocations():
            for epoch in range(initial_epoch, epochs):
                epoch_generator(model, seed, epoch)
                if hasattr(optimizer, "set_epoch"):
                    optimizer.set_epoch(epoch)
                for cb in callbacks:
                    cb.on_epoch_begin(epoch, trainer)
                t0 = time.perf_counter()
                total_loss, correct, seen = 0.0, 0, 0
                for step in range(steps_per_epoch):
                    xb, yb = _batch_pair(next(stream), "generator")
                    logits = model.forward(transform(xb), training=True)
                    batch_loss = float(loss.forward(logits, yb))
                    if not math.isfinite(batch_loss):
                        raise _diverged(epoch, f", at step {step + 1}: loss is {batch_loss}", optimizer)
                    model.backward(loss.backward())
                    optimizer.step()
                    total_loss += batch_loss * len(yb)
                    if yb.ndim == 1:
                        correct += int(np.count_nonzero(np.argmax(logits, axis=1) == yb))
                    seen += len(yb)
                train_seconds = time.perf_counter() - t0
                logs = {"loss": total_loss / seen, "acc": correct / seen, "val_loss": None, "val_acc": None}
                if validation_data is not None:
                    logs["val_loss"], logs["val_acc"] = evaluate_generator(model, val_stream, validation_steps,
                                                                           loss=loss, transform=transform)
                    if not math.isfinite(logs["val_loss"]):
                        raise _diverged(epoch, f": the validation loss is {logs['val_loss']}", optimizer)
                _record(trainer, epoch, logs, optimizer, seen, train_seconds, time.perf_counter() - t0)
                for cb in callbacks:
                    cb.on_epoch_end(epoch, logs, trainer)
                if trainer.stop:
                    break
    finally:
        if was_training is not None and hasattr(model, "train"):
            model.train(was_training)
    return trainer.history


def evaluate_generator(model, generator, steps, loss=None, transform=None):
    """Keras's ``evaluate_generator``: (mean loss, accuracy) over the next ``steps`` batches of
    ``generator`` (an iterable of (images, labels), drawn from without end as in
    :func:`fit_generator`), inference mode; each image counts once, so a smaller last batch
    weighs by its size. loss: None is softmax cross-entropy."""
    steps = _steps(steps, "steps")
    loss = SoftmaxCrossEntropy() if loss is None else loss
    transform = transform or (lambda b: np.asarray(b))
    stream = generator if hasattr(generator, "__next__") else endless(generator, "generator")
    total, correct, seen = 0.0, 0, 0
    for i in range(steps):
        try:
            b = next(stream)
        except StopIteration:
            raise ValueError(f"generator: ran out after {i} of steps={steps} batches") from None
        xb, yb = _batch_pair(b, "generator")
        logits = model.forward(transform(xb), training=False)
        total += float(loss.forward(logits, yb)) * len(yb)
        correct += int(np.count_nonzero(np.argmax(logits, axis=1) == yb))
        seen += len(yb)
    return total / seen, correct / seen


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
    """(mean loss, accuracy) of ``model`` on ``data = (images, labels)``, inference mode.

    loss: any loss with ``forward(logits, labels) -> float``; None is softmax
    cross-entropy, the zoo's training loss (Keras reports the model's loss the same way)."""
    x, y = _check_data(data, "data")
    loss = SoftmaxCrossEntropy() if loss is None else loss
    total, correct = 0.0, 0
    transform = transform or to_float
    for s in range(0, len(x), batch_size):
        logits = model.forward(transform(x[s:s + batch_size]), training=False)
        yb = y[s:s + batch_size]
        total += float(loss.forward(logits, yb)) * len(yb)
        correct += int(np.count_nonzero(np.argmax(logits, axis=1) == yb))
    return total / len(x), correct / len(x)


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
