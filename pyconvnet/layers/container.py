"""Containers: Sequential (a chain) and Graph (named nodes, several inputs/outputs,
fan-out and skip connections). Both are Layers: params/grads/buffers are their
children's, prefixed with the child's name ('layers.0.weight', 'conv1.weight')."""
from __future__ import annotations

import numpy as np

from .base import Layer, layer_from_config

__all__ = ["Sequential", "Graph"]


def _check_name(name, what):
    if not isinstance(name, str) or not name or "." in name:
        raise ValueError(f"{what}: expected a non-empty str without '.', got {name!r}")
    return name


def _check_layer(layer, what):
    if not isinstance(layer, Layer):
        raise TypeError(f"{what}: expected a Layer, got {type(layer).__name__}")
    return layer


def _all_layers(layer):
    yield layer
    for _, child in layer._children():
        yield from _all_layers(child)


def _no_shared(layers, what):
    """One layer object may appear only once: it caches one forward for its backward."""
    seen = {}
    for name, top in layers:
        for sub in _all_layers(top):
            if id(sub) in seen:
                raise ValueError(f"{what}: layer {sub!r} is used twice ({seen[id(sub)]!r} and {name!r}); "
                                 f"a layer caches one forward, so build a separate layer per use")
            seen[id(sub)] = name


class Sequential(Layer):
    """Runs layers in order: ``Sequential(l0, l1, ...)`` names them 'layers.0', 'layers.1', ...;
    ``Sequential(("conv1", l0), ("relu1", l1), ...)`` or ``Sequential(names=[...], *layers)``
    uses the given names. ``training`` is passed to every layer."""

    def __init__(self, *layers, names=None):
        super().__init__()
        items = list(layers)
        if len(items) == 1 and isinstance(items[0], dict):
            items = list(items[0].items())
        tupled = [isinstance(it, tuple) for it in items]
        if any(tupled):
            if not all(tupled) or names is not None:
                raise ValueError("layers: give all layers as (name, layer) pairs or none (or use names=)")
            names = [n for n, _ in items]
            items = [l for _, l in items]
        self._layers = [_check_layer(l, f"layers[{i}]") for i, l in enumerate(items)]
        if names is not None:
            names = list(names)
            if len(names) != len(self._layers):
                raise ValueError(f"names: expected {len(self._layers)} names, got {len(names)}")
            for n in names:
                _check_name(n, "names")
            if len(set(names)) != len(names):
                raise ValueError(f"names: duplicates in {names}")
        self._names = names
        _no_shared(self._children(), "layers")

    def _children(self):
        if self._names is None:
            return [(f"layers.{i}", l) for i, l in enumerate(self._layers)]
        return list(zip(self._names, self._layers))

    def __len__(self):
        return len(self._layers)

    def __getitem__(self, i):
        if isinstance(i, str):
            if self._names is None or i not in self._names:
                raise KeyError(f"no layer named {i!r}")
            return self._layers[self._names.index(i)]
        return self._layers[i]

    def __iter__(self):
        return iter(self._layers)

    def forward(self, x, training=False):
        if training:
            # the last step's saved activations go before this step's are made: a
            # forward overwrites them anyway, and holding both set the peak memory
            self.clear_cache()
        for layer in self._layers:
            x = layer.forward(x, training=training)
        return x

    @property
    def need_input_grad(self):
        return self._layers[0].need_input_grad if self._layers else True

    @need_input_grad.setter
    def need_input_grad(self, value):
        # Up to and including the first layer with parameters: with no input
        # gradient wanted, the layers before it (Flatten, ...) have nothing to
        # pass back, and it can skip its own input gradient (mlp3: a third of
        # the first layer's backward).
        for layer in self._layers:
            layer.need_input_grad = bool(value)
            if layer.params:
                break

    def backward(self, grad_y):
        for layer in reversed(self._layers):
            grad_y = layer.backward(grad_y)
            if grad_y is None:  # a layer with need_input_grad=False: nothing below needs it
                return None
        return grad_y

    def config(self):
        args = {"layers": [l.config() for l in self._layers]}
        if self._names is not None:
            args["names"] = list(self._names)
        return {"class": type(self).__name__, "args": args}

    @classmethod
    def from_config(cls, args):
        layers = args.get("layers")
        if not isinstance(layers, list):
            raise ValueError(f"cfg['args']['layers']: expected a list of layer configs, got {layers!r:.100}")
        extra = set(args) - {"layers", "names"}
        if extra:
            raise ValueError(f"cfg['args']: unexpected keys {sorted(extra)} for Sequential")
        return cls(*[layer_from_config(c) for c in layers], names=args.get("names"))

    def __repr__(self):
        inner = "\n".join(f"  ({n}): {l!r}".replace("\n", "\n  ") for n, l in self._children())
        return f"Sequential(\n{inner}\n)"


class _Node:
    __slots__ = ("layer", "inputs")

    def __init__(self, layer, inputs):
        self.layer, self.inputs = layer, inputs


class Graph(Layer):
    """A directed acyclic graph of named layers.

    ``Graph(nodes, inputs=["x"], outputs=["y"])`` with ``nodes`` a list of
    ``(name, layer, inputs)`` (or dicts with those keys), and/or ``add(name, layer,
    inputs)`` per node; ``inputs`` of a node are names of model inputs or of other
    nodes, a str for one. Multi-input layers (Concat, Add) get
    the list of their inputs; other layers take exactly one. Nodes may be added in
    any order; forward runs the ancestors of the outputs in topological order.

    forward(x): x is an array (one model input), a list in ``inputs`` order, or a dict
    by name; returns an array (one output) or a list in ``outputs`` order.
    backward(grad): an array or a list (None = no gradient for that output); returns
    the gradient of each model input (array or list). Gradients of a node read by
    several consumers (fan-out) are summed. Parameters are named 'node.weight'.
    outputs defaults to the last node added.
    """

    def __init__(self, nodes=(), inputs="x", outputs=None):
        super().__init__()
        if isinstance(nodes, (str, Layer)) or not hasattr(nodes, "__iter__"):
            raise TypeError(f"nodes: expected a list of (name, layer, inputs) triples, got {type(nodes).__name__} "
                            f"(the model inputs are given with inputs=)")
        ins = [inputs] if isinstance(inputs, str) else list(inputs)
        if not ins:
            raise ValueError("inputs: a Graph needs at least one input name")
        for n in ins:
            _check_name(n, "inputs")
        if len(set(ins)) != len(ins):
            raise ValueError(f"inputs: duplicate names in {ins}")
        self.input_names = ins
        self._outputs = None if outputs is None else ([outputs] if isinstance(outputs, str) else list(outputs))
        if self._outputs is not None and not self._outputs:
            raise ValueError("outputs: a Graph needs at least one output name")
        self._nodes: dict[str, _Node] = {}
        self._order = None
        for i, spec in enumerate(nodes):
            if isinstance(spec, dict) and set(spec) == {"name", "layer", "inputs"}:
                self.add(spec["name"], spec["layer"], spec["inputs"])
            elif isinstance(spec, (tuple, list)) and len(spec) == 3:
                self.add(*spec)
            else:
                raise TypeError(f"nodes[{i}]: expected a (name, layer, inputs) triple, got {spec!r:.100}")

    @property
    def output_names(self):
        if self._outputs is not None:
            return list(self._outputs)
        if not self._nodes:
            raise ValueError("outputs: the Graph has no nodes")
        return [next(reversed(self._nodes))]

    def add(self, name, layer, inputs):
        """Adds node ``name`` computing ``layer(inputs)``; returns self."""
        _check_name(name, "name")
        if name in self._nodes or name in self.input_names:
            raise ValueError(f"name: {name!r} is already a node or an input of this Graph")
        _check_layer(layer, f"layer (node {name!r})")
        ins = [inputs] if isinstance(inputs, str) else list(inputs)
        if not ins:
            raise ValueError(f"inputs: node {name!r} needs at least one input")
        for i in ins:
            if not isinstance(i, str):
                raise TypeError(f"inputs: node {name!r}: expected input names (str), got {i!r}")
        if not layer.multi_input and len(ins) != 1:
            raise ValueError(f"inputs: node {name!r}: {type(layer).__name__} takes one input, got {ins} "
                             f"(merge them with Concat or Add)")
        _no_shared([(n, nd.layer) for n, nd in self._nodes.items()] + [(name, layer)], "layer")
        self._nodes[name] = _Node(layer, ins)
        self._order = None
        return self

    def __getitem__(self, name):
        return self._nodes[name].layer

    def _children(self):
        return [(n, nd.layer) for n, nd in self._nodes.items()]

    def _plan(self):
        """Topological order of the outputs' ancestors (cached); checks names and cycles."""
        if self._order is not None:
            return self._order
        outs = self.output_names
        for o in outs:
            if o not in self._nodes and o not in self.input_names:
                raise ValueError(f"outputs: {o!r} is neither a node nor an input of this Graph")
        order, state = [], {}

        def visit(name, path):
            if name in self.input_names:
                return
            if name not in self._nodes:
                raise ValueError(f"inputs: node {path[-1]!r} reads {name!r}, which is neither a node nor an input "
                                 f"(inputs {self.input_names}, nodes {list(self._nodes)})")
            st = state.get(name)
            if st == "done":
                return
            if st == "active":
                cycle = path[path.index(name):] + [name]
                raise ValueError(f"nodes: cycle {' -> '.join(cycle)}")
            state[name] = "active"
            for i in self._nodes[name].inputs:
                visit(i, path + [name])
            state[name] = "done"
            order.append(name)

        for o in outs:
            visit(o, [])
        self._order = order
        return order

    def _bind_inputs(self, x):
        names = self.input_names
        if isinstance(x, dict):
            missing = [n for n in names if n not in x]
            extra = [k for k in x if k not in names]
            if missing or extra:
                raise ValueError(f"x: expected the inputs {names}, got keys {list(x)}")
            return {n: x[n] for n in names}
        if isinstance(x, (list, tuple)):
            if len(x) != len(names):
                raise ValueError(f"x: expected {len(names)} input arrays {names}, got {len(x)}")
            return dict(zip(names, x))
        if len(names) != 1:
            raise ValueError(f"x: this Graph takes {len(names)} inputs {names}: pass a list or a dict")
        return {names[0]: x}

    def forward(self, x, training=False):
        if training:
            self.clear_cache()  # as Sequential.forward: one step's activations at a time
        order = self._plan()
        values = self._bind_inputs(x)
        for n in self.input_names:
            values[n] = np.asarray(values[n])
        in_meta = {n: (v.shape, v.dtype) for n, v in values.items()}
        # drop a value once its last consumer has run
        remaining = {}
        for name in order:
            for i in self._nodes[name].inputs:
                remaining[i] = remaining.get(i, 0) + 1
        outs = self.output_names
        for name in order:
            node = self._nodes[name]
            args = [values[i] for i in node.inputs]
            values[name] = node.layer.forward(args if node.layer.multi_input else args[0], training=training)
            for i in node.inputs:
                remaining[i] -= 1
                if remaining[i] == 0 and i not in outs:
                    del values[i]
        self._cache = in_meta
        result = [values[o] for o in outs]
        return result[0] if len(result) == 1 else result

    def backward(self, grad_y):
        in_meta = self._saved()
        outs = self.output_names
        if len(outs) == 1 and not isinstance(grad_y, (list, tuple)):
            grad_y = [grad_y]
        if not isinstance(grad_y, (list, tuple)) or len(grad_y) != len(outs):
            raise ValueError(f"grad_y: expected {len(outs)} gradient(s), one per output {outs}")
        grads = {}  # name -> [array, owned]; the first contribution is kept by reference

        def accumulate(name, g):
            if g is None:
                return
            cur = grads.get(name)
            if cur is None:
                grads[name] = [g, False]
            elif cur[1]:
                cur[0] += g
            else:
                cur[0] = np.add(cur[0], g)
                cur[1] = True

        for o, g in zip(outs, grad_y):
            accumulate(o, None if g is None else np.asarray(g))
        for name in reversed(self._plan()):
            node = self._nodes[name]
            entry = grads.pop(name, None)
            if entry is None:
                node.layer.zero_grad()  # nothing flows back through this node: its parameter gradients are 0
                continue
            gin = node.layer.backward(entry[0])
            if not node.layer.multi_input:
                gin = [gin]
            for i, g in zip(node.inputs, gin):
                accumulate(i, g)
        result = []
        for n in self.input_names:
            entry = grads.get(n)
            shape, dtype = in_meta[n]
            result.append(entry[0] if entry is not None else np.zeros(shape, dtype if dtype.kind == "f" else None))
        return result[0] if len(result) == 1 else result

    def config(self):
        nodes = [{"name": n, "layer": nd.layer.config(), "inputs": list(nd.inputs)} for n, nd in self._nodes.items()]
        return {"class": type(self).__name__,
                "args": {"inputs": list(self.input_names), "outputs": self.output_names, "nodes": nodes}}

    @classmethod
    def from_config(cls, args):
        extra = set(args) - {"inputs", "outputs", "nodes"}
        if extra:
            raise ValueError(f"cfg['args']: unexpected keys {sorted(extra)} for Graph")
        nodes = args.get("nodes", [])
        if not isinstance(nodes, list):
            raise ValueError(f"cfg['args']['nodes']: expected a list, got {type(nodes).__name__}")
        g = cls(inputs=args.get("inputs", "x"), outputs=args.get("outputs"))
        for i, spec in enumerate(nodes):
            if not isinstance(spec, dict) or set(spec) != {"name", "layer", "inputs"}:
                raise ValueError(f"cfg['args']['nodes'][{i}]: expected a dict with keys name, layer, inputs")
            g.add(spec["name"], layer_from_config(spec["layer"]), spec["inputs"])
        return g

    def __repr__(self):
        lines = [f"  {n} = {nd.layer!r}({', '.join(nd.inputs)})" for n, nd in self._nodes.items()]
        return f"Graph(inputs={self.input_names}, outputs={self.output_names},\n" + "\n".join(lines) + "\n)"
