"""Checkpoints: architecture config + weights + optimizer state in one ``.npz``.

No pickle anywhere: the config and metadata are JSON stored as a uint8 array,
tensors are plain arrays, and loading uses ``allow_pickle=False``. Files are
written to a temporary name in the same folder, flushed to disk and renamed,
so a crash never leaves a truncated checkpoint under the real name.
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from .layers import layer_from_config
from .optim import OPTIMIZERS, optimizer_from_config

__all__ = ["save_checkpoint", "load_checkpoint", "Checkpoint", "CheckpointError"]

FORMAT = "pyconvnet-checkpoint-1"


class CheckpointError(ValueError):
    """The file is not a readable pyconvnet checkpoint."""


def _json_bytes(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj, sort_keys=True).encode("utf-8"), dtype=np.uint8)


def _to_jsonable(x):
    if isinstance(x, dict):
        return {str(k): _to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_to_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def save_checkpoint(path, model, optimizer=None, meta=None):
    """Write ``model`` (its ``config()`` and ``state_dict()``), the optimizer state
    and JSON-serialisable ``meta`` to ``path`` atomically."""
    arrays = {"__format__": _json_bytes(FORMAT), "__config__": _json_bytes(_to_jsonable(model.config())),
              "__meta__": _json_bytes(_to_jsonable(meta or {}))}
    for k, v in model.state_dict().items():
        arrays["model/" + k] = np.asarray(v)
    if optimizer is not None:
        arrays["__optimizer__"] = _json_bytes(type(optimizer).__name__)
        if hasattr(optimizer, "config"):  # hyper-parameters, for Checkpoint.optimizer()
            cfg = optimizer.config()
            if getattr(optimizer, "scheduler", None) is not None and cfg["args"].get("scheduler") is None:
                cfg["args"]["scheduler"] = "not serialisable"  # a plain function: the caller must pass it again
            arrays["__optimizer_config__"] = _json_bytes(_to_jsonable(cfg))
        for k, v in optimizer.state_dict().items():
            arrays["optim/" + k] = np.asarray(v)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=folder)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make every checkpoint private
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


class Checkpoint:
    """What load_checkpoint returns: the rebuilt model, raw optimizer state, metadata.

    To resume training::

        ck = load_checkpoint("runs/lenet5/checkpoint.npz")
        opt = ck.optimizer()                       # same class, hyper-parameters and state
        fit(ck.model, train, epochs=10, batch_size=64, optimizer=opt, loss=loss, seed=ck.meta["seed"],
            initial_epoch=ck.epoch, history=History.from_dict(ck.meta["history"]))
    """

    def __init__(self, model, optimizer_name, optimizer_state, meta, config, optimizer_config=None, path=None):
        self.model, self.optimizer_name, self.optimizer_state = model, optimizer_name, optimizer_state
        self.meta, self.config = meta, config
        self.optimizer_config, self.path = optimizer_config, path

    @property
    def epoch(self) -> int:
        """Epochs done when the checkpoint was written (meta["epoch"], 0 if absent): fit's initial_epoch."""
        return int(self.meta.get("epoch", 0) or 0)

    def optimizer(self, params=None, **overrides):
        """The optimizer rebuilt from the checkpoint: its class and hyper-parameters over
        ``params`` (default: this checkpoint's model), with its state (step count, lr,
        moments) loaded, so training continues as if never interrupted. ``overrides``
        replace constructor arguments (e.g. ``scheduler=`` for a run extended to more epochs)."""
        if self.optimizer_name is None:
            raise CheckpointError(f"{self.path}: the checkpoint holds no optimizer (it was saved without one)")
        if self.optimizer_config is None:
            raise CheckpointError(
                f"{self.path}: written by pyconvnet 0.1.0, which did not store the optimizer's hyper-parameters; "
                f"build {self.optimizer_name}(model.parameters(), lr=...) yourself and call its "
                f"load_state_dict(checkpoint.optimizer_state)")
        cls, args = self.optimizer_config["class"], dict(self.optimizer_config.get("args", {}))
        params = self.model if params is None else params
        if cls not in OPTIMIZERS:
            raise CheckpointError(f"{self.path}: unknown optimizer class {cls!r}; known: {sorted(OPTIMIZERS)}")
        if "scheduler" in overrides or args.get("scheduler") == "not serialisable":
            if "scheduler" not in overrides:
                raise CheckpointError(f"{self.path}: the optimizer's scheduler was a Python function, which a "
                                      f"checkpoint cannot hold; pass it again: optimizer(scheduler=...)")
            args.update(overrides)
            opt = OPTIMIZERS[cls](params, **args)
        else:
            args.update(overrides)
            opt = optimizer_from_config({"class": cls, "args": args}, params)
        try:
            opt.load_state_dict(self.optimizer_state)
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{self.path}: the optimizer state does not fit these parameters ({e})") from e
        return opt


def load_checkpoint(path):
    """Rebuild the model from ``path`` (a fresh process predicts bit-identically)."""
    try:
        # our own file object: np.load leaks its handle when the zip is unreadable
        with open(os.fspath(path), "rb") as f:
            head = f.read(4)
            if head[:2] != b"PK":
                # not a zip at all: np.load would try it as a pickle and advise allow_pickle=True,
                # the one thing never to do with a file of unknown origin
                what = "an empty file" if not head else ("a .npy array" if head == b"\x93NUM" else
                                                         "a file that is not a zip archive")
                raise CheckpointError(f"{path}: not a .npz checkpoint ({what}); pyconvnet checkpoints are the "
                                      f"checkpoint.npz / best.npz files that `pyconvnet train` writes")
            f.seek(0)
            with np.load(f, allow_pickle=False) as z:
                files = {k: z[k] for k in z.files}
    except (FileNotFoundError, CheckpointError):
        raise
    except IsADirectoryError:
        raise CheckpointError(f"{path}: is a folder, not a .npz checkpoint file") from None
    except Exception as e:  # zipfile/format errors: say what the file is not
        detail = "" if "pickle" in str(e) else f" ({e})"  # never relay NumPy's advice to unpickle
        raise CheckpointError(f"{path}: not a readable .npz checkpoint{detail}") from e

    def text(key):
        if key not in files:
            raise CheckpointError(f"{path}: missing {key!r}; not a pyconvnet checkpoint")
        try:
            return json.loads(files[key].tobytes().decode("utf-8"))
        except ValueError as e:  # UnicodeDecodeError, JSONDecodeError
            raise CheckpointError(f"{path}: {key!r} is not valid JSON text ({e}); the file is damaged") from e

    fmt = text("__format__")
    if fmt != FORMAT:
        raise CheckpointError(f"{path}: unsupported checkpoint format {fmt!r} (expected {FORMAT!r})")
    config, meta = text("__config__"), text("__meta__")
    try:
        model = layer_from_config(config)
        model.load_state_dict({k[6:]: v for k, v in files.items() if k.startswith("model/")})
    except (ValueError, TypeError, KeyError) as e:
        raise CheckpointError(f"{path}: the model cannot be rebuilt from the checkpoint ({e})") from e
    opt_state = {k[6:]: v for k, v in files.items() if k.startswith("optim/")}
    opt_name = text("__optimizer__") if "__optimizer__" in files else None
    opt_config = text("__optimizer_config__") if "__optimizer_config__" in files else None
    return Checkpoint(model, opt_name, opt_state, meta, config, opt_config, os.fspath(path))
