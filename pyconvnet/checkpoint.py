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
    """What load_checkpoint returns: the rebuilt model, raw optimizer state, metadata."""

    def __init__(self, model, optimizer_name, optimizer_state, meta, config):
        self.model, self.optimizer_name, self.optimizer_state = model, optimizer_name, optimizer_state
        self.meta, self.config = meta, config


def load_checkpoint(path):
    """Rebuild the model from ``path`` (a fresh process predicts bit-identically)."""
    try:
        # our own file object: np.load leaks its handle when the zip is unreadable
        with open(os.fspath(path), "rb") as f, np.load(f, allow_pickle=False) as z:
            files = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise
    except Exception as e:  # zipfile/format errors: say what the file is not
        raise CheckpointError(f"{path}: not a readable .npz checkpoint ({e})") from e

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
    return Checkpoint(model, opt_name, opt_state, meta, config)
