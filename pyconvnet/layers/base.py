"""The ``Layer`` contract shared by every layer and container.

A layer is a forward/backward pair around one functional op (cs231n style)::

    y = layer.forward(x, training=False)   # caches what backward needs
    grad_x = layer.backward(grad_y)         # OVERWRITES layer.grads, returns grad_x

* ``params`` / ``grads``: dicts name -> ndarray, same names, same shapes. The arrays
  are created once and then only modified in place (backward copies into the
  grad arrays, ``load_state_dict`` copies into the params), so an optimizer can
  keep references to them. The dicts themselves are fresh on every access.
* ``buffers``: non-trainable state (running statistics), also modified in place.
* ``state_dict()``: copies of params + buffers; ``load_state_dict(d, strict=True)``.
* ``config()``: ``{"class": name, "args": {...}}`` (JSON); ``layer_from_config``
  rebuilds an equal architecture (weights come from ``load_state_dict``).
* Multi-input layers (``multi_input = True``: Concat, Add) take a list of arrays
  and their backward returns a list of gradients.

Gradients a backward returns may be views of (or the same object as) ``grad_y``:
treat them as read-only.

A custom layer subclasses Layer (it is then known to layer_from_config by its class
name): call ``super().__init__()``, create parameters with ``self._add_param(name,
array)`` and buffers in ``self._buffers``, save what backward needs in
``self._cache`` (read it back with ``self._saved()``), write parameter gradients
with ``self._set_grad(name, value)``, and return the constructor arguments from
``_args()``. Check it with ``pyconvnet.layers.check_backward``.
"""
from __future__ import annotations

import json

import numpy as np

from .._args import float_array, float_dtype
from .. import init as _init

__all__ = ["Layer", "layer_from_config", "register", "LAYERS"]

LAYERS: dict[str, type] = {}


def register(cls):
    """Make ``cls`` known to :func:`layer_from_config` (every Layer subclass is registered
    by its class name automatically; a later class of the same name replaces it)."""
    LAYERS[cls.__name__] = cls
    return cls


def _jsonable(v, where):
    """Tuples -> lists, numpy scalars -> Python; raises TypeError on anything JSON can't hold."""
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (tuple, list)):
        return [_jsonable(e, where) for e in v]
    if isinstance(v, dict):
        return {str(k): _jsonable(e, where) for k, e in v.items()}
    if v is None or isinstance(v, (int, float, str)):
        return v
    raise TypeError(f"{where}: {v!r} ({type(v).__name__}) is not JSON-serialisable")


class Layer:
    """Base class: see the module docstring for the contract."""

    multi_input = False
    # False: backward may skip the input gradient and return None (a network's
    # first layer: nothing consumes it). Containers set it on their first layer.
    need_input_grad = True

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        register(cls)

    def __init__(self):
        self._params: dict[str, np.ndarray] = {}
        self._grads: dict[str, np.ndarray] = {}
        self._buffers: dict[str, np.ndarray] = {}
        self._cache = None

    # ------------------------------------------------------------ to override
    def forward(self, x, training=False):
        raise NotImplementedError

    def backward(self, grad_y):
        raise NotImplementedError

    def _args(self) -> dict:
        """Constructor arguments, for config()."""
        return {}

    def _children(self):
        """(name, layer) pairs of sub-layers (containers)."""
        return ()

    # ------------------------------------------------------------ helpers for subclasses
    def _add_param(self, name, value):
        self._params[name] = value
        self._grads[name] = np.zeros(value.shape, value.dtype)  # C order: kernels write into it

    def _set_grad(self, name, value):
        np.copyto(self._grads[name], value)

    def _saved(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}.backward: called before forward (nothing is cached); "
                               f"call forward first")
        return self._cache

    def _input(self, x, name="x"):
        """x as a float ndarray; for layers with parameters, of the parameters' dtype
        (a Python list becomes that dtype)."""
        dtype = getattr(self, "dtype", None)
        x = float_array(x, name, dtype if isinstance(x, (list, tuple)) else None)
        if dtype is not None and x.dtype != dtype:
            raise TypeError(f"{name}: expected dtype {dtype} (the dtype of {type(self).__name__}'s parameters; "
                            f"convert the input, or the layer with .astype()), got {x.dtype}")
        return x

    # ------------------------------------------------------------ public API
    # The mode model(x) runs in (torch's ``training`` flag). A new layer starts in eval
    # mode, unlike torch, so that model(x) and forward(x) (whose default is
    # training=False) agree: call train() before a hand-written training loop; fit()
    # does it for you and restores the mode it found.
    training = False

    def __call__(self, x, training=None):
        """forward(x, training); ``training=None`` takes the layer's mode (train() / eval())."""
        return self.forward(x, training=self.training if training is None else bool(training))

    def train(self, mode=True):
        """Puts this layer and every layer inside it in training mode (mode=False: eval mode);
        model(x) then uses it (Dropout drops, BatchNorm uses batch statistics). Returns self."""
        self.training = bool(mode)
        for _, child in self._children():
            child.train(mode)
        return self

    def eval(self):
        """Inference mode: ``train(False)``. Returns self."""
        return self.train(False)

    def _collect(self, attr):
        out = dict(getattr(self, attr))
        for prefix, child in self._children():
            for k, v in getattr(child, attr[1:]).items():
                out[f"{prefix}.{k}"] = v
        return out

    @property
    def params(self) -> dict:
        """Trainable arrays by name (in place updates reach the model)."""
        return self._collect("_params")

    @property
    def grads(self) -> dict:
        """Gradients of the last backward, same names and shapes as ``params``."""
        return self._collect("_grads")

    @property
    def buffers(self) -> dict:
        """Non-trainable state (e.g. BatchNorm running statistics)."""
        return self._collect("_buffers")

    def parameters(self):
        """Yields (name, param, grad) triples: what the optimizers take."""
        grads = self.grads
        for name, p in self.params.items():
            yield name, p, grads[name]

    def zero_grad(self):
        for g in self.grads.values():
            g.fill(0)

    def clear_cache(self):
        """Drops what forward saved for backward (frees activations)."""
        self._cache = None
        for _, child in self._children():
            child.clear_cache()

    def set_rng(self, rng):
        """Gives every random layer inside (Dropout) the generator ``rng`` (Generator or
        int seed: one generator made from it is shared by all); a training loop can reseed
        per epoch for reproducible runs. Returns self."""
        rng = _init.as_rng(rng)
        for _, child in self._children():
            child.set_rng(rng)
        return self

    def num_params(self) -> int:
        return int(sum(p.size for p in self.params.values()))

    def summary(self, input_shape=None, *, print_fn=print):
        """A Keras-style table of the layer's children: name (class), output shape, parameter
        count, then the totals. With ``input_shape`` ((C, H, W) without the batch, or a list
        of them for a multi-input Graph) one inference forward on a zero batch of 1 fills in
        the output shapes (N = any batch). Prints it with ``print_fn`` (None: don't) and
        returns the text."""
        children = list(self._children()) or [(type(self).__name__, self)]
        shapes = {}
        if input_shape is not None:
            shapes = self._trace_shapes(input_shape, children)
        graph_inputs = getattr(self, "_nodes", None)
        rows = []
        for name, layer in children:
            label = name if layer is self else f"{name} ({type(layer).__name__})"
            if graph_inputs is not None and name in graph_inputs:
                label += " <- " + ", ".join(graph_inputs[name].inputs)
            shape = shapes.get(name, "?" if input_shape is not None else "")
            rows.append((label, shape, f"{layer.num_params():,}"))
        head = ("layer (type)", "output shape" if input_shape is not None else "", "params")
        widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(3)]
        rule = "-" * (sum(widths) + 4)
        fmt = lambda r: f"{str(r[0]):<{widths[0]}}  {str(r[1]):<{widths[1]}}  {str(r[2]):>{widths[2]}}"  # noqa: E731
        total = self.num_params()
        nbuf = int(sum(b.size for b in self.buffers.values()))
        nbytes = sum(p.nbytes for p in self.params.values()) + sum(b.nbytes for b in self.buffers.values())
        lines = [f"{type(self).__name__}", rule, fmt(head), rule] + [fmt(r) for r in rows] + [
            rule, f"total parameters: {total:,} (trainable), buffers: {nbuf:,} values, "
                  f"{nbytes / 2**20:.2f} MiB in all"]
        text = "\n".join(lines)
        if print_fn is not None:
            print_fn(text)
        return text

    def _trace_shapes(self, input_shape, children):
        """Output shape of each child in one inference forward on zeros (batch 1, shown as N)."""
        dtype = next((p.dtype for p in self.params.values()), np.dtype(np.float32))
        multi = isinstance(input_shape, list)
        specs = input_shape if multi else [input_shape]
        try:
            xs = [np.zeros((1,) + tuple(int(v) for v in s), dtype) for s in specs]
        except (TypeError, ValueError):
            raise TypeError(f"input_shape: expected a tuple of ints (C, H, W) without the batch, or a list of "
                            f"them, got {input_shape!r}") from None
        shapes, saved = {}, []

        def fmt(y):
            if isinstance(y, (list, tuple)):
                return ", ".join(fmt(v) for v in y)
            return "(N, " + ", ".join(str(d) for d in np.shape(y)[1:]) + ")" if np.ndim(y) > 1 else "(N,)"

        for name, layer in children:
            def wrapped(x, training=False, _layer=layer, _name=name, _fwd=type(layer).forward):
                y = _fwd(_layer, x, training=training)
                shapes[_name] = fmt(y)
                return y
            if layer is not self:
                saved.append(layer)
                layer.forward = wrapped
        try:
            y = self.forward(xs if multi else xs[0], training=False)
        finally:
            for layer in saved:
                del layer.forward
            self.clear_cache()
        if not saved:
            shapes[type(self).__name__] = fmt(y)
        return shapes

    def astype(self, dtype):
        """Converts params, grads and float buffers to ``dtype`` (float32/float64); returns self.

        This replaces the arrays: build optimizers after converting."""
        dt = float_dtype(dtype)
        for d in (self._params, self._grads):
            for k in d:
                d[k] = d[k].astype(dt)
        for k, b in self._buffers.items():
            if b.dtype.kind == "f":
                self._buffers[k] = b.astype(dt)
        if hasattr(self, "dtype"):
            self.dtype = dt
        for _, child in self._children():
            child.astype(dt)
        self._cache = None
        return self

    def state_dict(self) -> dict:
        """Copies of params and buffers, by name (arrays only: fits an .npz)."""
        out = {k: v.copy() for k, v in self.params.items()}
        out.update((k, v.copy()) for k, v in self.buffers.items())
        return out

    def load_state_dict(self, state, strict=True):
        """Copies ``state`` (a mapping name -> array, e.g. an NpzFile) into params and buffers in place.

        strict=True: missing or unexpected keys are a ValueError. Shapes must match
        exactly (ValueError); floats are cast to the layer's dtype. Nothing is
        modified unless every entry is valid. Returns (missing_keys, unexpected_keys)."""
        if not hasattr(state, "keys") or not hasattr(state, "__getitem__"):
            raise TypeError(f"state: expected a mapping name -> array, got {type(state).__name__}")
        targets = self.params
        targets.update(self.buffers)
        keys = list(state.keys())
        missing = [k for k in targets if k not in state]
        unexpected = [k for k in keys if k not in targets]
        if strict and (missing or unexpected):
            msg = []
            if missing:
                msg.append(f"missing keys {missing}")
            if unexpected:
                msg.append(f"unexpected keys {unexpected}")
            raise ValueError(f"state: {' and '.join(msg)} for {type(self).__name__} "
                             f"(expected keys {list(targets)})")
        todo = []
        for k in keys:
            if k not in targets:
                continue
            dst, src = targets[k], np.asarray(state[k])
            if src.shape != dst.shape:
                raise ValueError(f"state[{k!r}]: expected shape {dst.shape}, got {src.shape}")
            if not np.can_cast(src.dtype, dst.dtype, "same_kind"):
                raise TypeError(f"state[{k!r}]: cannot load dtype {src.dtype} into {dst.dtype}")
            todo.append((dst, src))
        for dst, src in todo:
            np.copyto(dst, src, casting="same_kind")
        return missing, unexpected

    def config(self) -> dict:
        """{"class": class name, "args": constructor arguments}, JSON-serialisable."""
        cfg = {"class": type(self).__name__, "args": _jsonable(self._args(), f"{type(self).__name__}.config")}
        json.dumps(cfg)  # fail here, not when the caller saves it
        return cfg

    @classmethod
    def from_config(cls, args: dict):
        return cls(**args)

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._args().items())
        return f"{type(self).__name__}({args})"


def layer_from_config(cfg):
    """Rebuilds a layer (or a whole container) from ``Layer.config()`` (a dict or its JSON string)."""
    if isinstance(cfg, str):
        cfg = json.loads(cfg)
    if not isinstance(cfg, dict) or "class" not in cfg:
        raise ValueError(f"cfg: expected a dict {{'class': ..., 'args': {{...}}}}, got {cfg!r:.200}")
    extra = set(cfg) - {"class", "args"}
    if extra:
        raise ValueError(f"cfg: unexpected keys {sorted(extra)} (expected 'class' and 'args')")
    name = cfg["class"]
    if name not in LAYERS:
        raise ValueError(f"cfg: unknown layer class {name!r}; known: {sorted(LAYERS)}")
    args = cfg.get("args", {})
    if not isinstance(args, dict):
        raise ValueError(f"cfg['args']: expected a dict, got {type(args).__name__}")
    return LAYERS[name].from_config(dict(args))


def _init_arg(init, name, default):
    """Validated initialiser spec -> (function, name for config). None means ``default``;
    a custom callable is recorded as None (the default) in config: after a rebuild the
    weights come from load_state_dict anyway."""
    if init is None:
        init = default
    return _init.get(init, name), init if isinstance(init, str) else None


class ParamLayer(Layer):
    """A layer with a weight and an optional bias drawn by initialisers (Linear, convolutions).

    init / bias_init: an initialiser name from pyconvnet.init or a callable with its
    signature; rng: np.random.Generator or int seed; seed: int (give one of rng, seed)."""

    def __init__(self, dtype, init, bias_init, rng, seed):
        super().__init__()
        self.dtype = float_dtype(dtype)
        self._init_fn, self._init_name = _init_arg(init, "init", "normal_fan_in")
        self._bias_init_fn, self._bias_init_name = _init_arg(bias_init, "bias_init", "zeros")
        self._rng = _init.as_rng(rng, seed)
        if seed is None and rng is not None and not isinstance(rng, np.random.Generator):
            seed = rng
        self._seed = None if seed is None else int(seed)

    def _draw(self, fn, shape, name, fan_in, fan_out):
        v = fn(shape, self._rng, fan_in=fan_in, fan_out=fan_out, dtype=self.dtype)
        v = np.ascontiguousarray(v, dtype=self.dtype)
        if v.shape != tuple(shape):
            raise ValueError(f"{name}: the initialiser returned shape {v.shape}, expected {tuple(shape)}")
        return v

    def _make(self, weight_shape, bias_size, fan_in, fan_out):
        """Draws weight (then bias, if bias_size) from the initialisers, in that order."""
        self._add_param("weight", self._draw(self._init_fn, weight_shape, "init", fan_in, fan_out))
        if bias_size:
            self._add_param("bias", self._draw(self._bias_init_fn, (bias_size,), "bias_init", fan_in, fan_out))
        self._rng = None  # only needed at construction

    def _init_args(self):
        return dict(init=self._init_name, bias_init=self._bias_init_name, seed=self._seed, dtype=self.dtype.name)
