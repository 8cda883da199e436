"""Checkpoints: architecture config + weights + optimizer state in one ``.npz``.

No pickle anywhere: the config and metadata are JSON stored as a uint8 array,
tensors are plain arrays, and loading uses ``allow_pickle=False``. Files are
written to a temporary name in the same folder, flushed to disk and renamed,
so a crash never leaves a truncated checkpoint under the real name.

``save_safetensors`` / ``load_safetensors``: the weights alone in the safetensors format,
under the names torch gives the equivalent module (the format code is ``_safetensors``).
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from .layers import layer_from_config
from .optim import OPTIMIZERS, optimizer_from_config

__all__ = ["save_checkpoint", "load_checkpoint", "Checkpoint", "CheckpointError", "save_safetensors", "load_safetensors"]

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


# ----------------------------------------------------------------------------- safetensors
SAFETENSORS_FORMAT = "pyconvnet-safetensors-1"


def _torch_names(model):
    """our state_dict name -> the name torch gives the same tensor: an unnamed Sequential's
    children are '0', '1', ... (torch's nn.Sequential), named ones and Graph nodes keep their names."""
    from .layers import Sequential

    out = {}

    def walk(layer, ours, theirs):
        for k in list(layer._params) + list(layer._buffers):
            out[ours + k] = theirs + k
        unnamed = isinstance(layer, Sequential) and layer._names is None
        for name, child in layer._children():
            walk(child, f"{ours}{name}.", f"{theirs}{name[len('layers.'):] if unnamed else name}.")

    walk(model, "", "")
    return out


def save_safetensors(model, path, metadata=None):
    """Writes the model's parameters and buffers to ``path`` in the safetensors format, under the
    names torch gives the equivalent module (``0.weight``, ``1.running_mean``, ...; a Graph's node
    names; BatchNorm's ``num_batches_tracked`` included), so ``safetensors.torch.load_file`` +
    ``load_state_dict`` fills that module. The ``__metadata__`` holds our config (JSON) and
    ``metadata`` (str -> str). No pickle. Returns ``path``."""
    from ._safetensors import write_safetensors

    names = _torch_names(model)
    state = model.state_dict()
    tensors = {names[k]: v for k, v in state.items()}
    meta = {"format": "pt", "pyconvnet.format": SAFETENSORS_FORMAT,
            "pyconvnet.config": json.dumps(_to_jsonable(model.config()), sort_keys=True)}
    if metadata:
        if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in metadata.items()):
            raise TypeError("metadata: expected a dict of str -> str")
        meta.update(metadata)
    return write_safetensors(path, tensors, meta)


def load_safetensors(model, path, strict=True):
    """Loads the tensors of the safetensors file ``path`` into ``model`` (in place) and returns it.

    Names are torch's (as :func:`save_safetensors` writes them, or as ``safetensors.torch.save_file``
    writes ``module.state_dict()`` of the equivalent torch module); F16 / BF16 / F64 are cast to the
    model's dtype. A BatchNorm's ``num_batches_tracked`` may be missing. ``model=None`` rebuilds the
    model from the config in the file's metadata (files written by save_safetensors). strict=True:
    missing or unexpected tensors are a ValueError. A file whose header lies (offsets, dtypes,
    sizes) is a ValueError naming it, and nothing is loaded."""
    from ._safetensors import read_safetensors

    tensors, meta = read_safetensors(path)
    if model is None:
        if "pyconvnet.config" not in meta:
            raise ValueError(f"{path}: the metadata holds no pyconvnet config; pass the model to load into")
        try:
            model = layer_from_config(meta["pyconvnet.config"])
        except (ValueError, TypeError, KeyError) as e:
            raise ValueError(f"{path}: the model cannot be rebuilt from the file's config ({e})") from e
    theirs_to_ours = {t: o for o, t in _torch_names(model).items()}
    unexpected = [k for k in tensors if k not in theirs_to_ours]
    state = {theirs_to_ours[k]: v for k, v in tensors.items() if k in theirs_to_ours}
    missing = [t for t, o in theirs_to_ours.items() if o not in state and not t.endswith("num_batches_tracked")]
    if strict and (missing or unexpected):
        parts = ([f"missing tensors {missing}"] if missing else []) + \
                ([f"unexpected tensors {unexpected}"] if unexpected else [])
        raise ValueError(f"{path}: {' and '.join(parts)} for {type(model).__name__} (expected "
                         f"{list(theirs_to_ours)})")
    try:
        model.load_state_dict(state, strict=False)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{path}: {e}") from e
    return model
