"""ONNX -> a trainable ``Graph`` of pyconvnet layers: ``load(path)``.

What ``torch.onnx.export`` writes for CNNs, with either exporter (TorchScript or
``dynamo=True``), opsets 13 and up. The import runs in three passes, and nothing is
returned unless all three succeed:

1. read and check the file (a truncated or foreign file is a ValueError naming it), list
   every op it uses and refuse those not in ``SUPPORTED_OPS`` (all of them named, with
   their nodes, before anything is built);
2. fuse multi-node patterns (GELU's Erf / Tanh expansions, MatMul + Add into Linear);
3. convert node by node in the file's (topological) order, folding constant shape
   arithmetic with NumPy (``_fold``) and running every new layer once on a batch-1
   sample, so each node's output shape is known exactly when the next one needs it
   (Reshape targets, Resize sizes, auto_pad) and a layer that rejects its input fails
   here, naming the ONNX node.

The batch dimension stays dynamic: the graph's input may declare it symbolic or fixed,
and every computed tensor keeps it first (a Reshape or Transpose that would move or
merge it is refused).
"""
from __future__ import annotations

import math
import os
import re

import numpy as np

from .. import layers as L
from ._fold import BATCH, FOLDABLE, fold, is_batch_derived
from ._patterns import fuse_gelu

__all__ = ["load", "SUPPORTED_OPS", "metadata"]

MIN_OPSET = 13


class _Node:
    __slots__ = ("op", "name", "inputs", "outputs", "attrs", "domain")

    def __init__(self, op, name, inputs, outputs, attrs, domain=""):
        self.op, self.name, self.inputs, self.outputs, self.attrs, self.domain = op, name, inputs, outputs, attrs, domain


class _Const:
    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


class _Dyn:
    """A computed tensor: the Graph value it is (a node or input name) and a batch-1 sample."""
    __slots__ = ("ref", "sample")

    def __init__(self, ref, sample):
        self.ref, self.sample = ref, sample


class _Importer:
    def __init__(self, path, model, dtype):
        self.path, self.model, self.dtype = path, model, dtype
        self.values = {}
        self.names = set()
        self.graph = None
        self.rng = np.random.default_rng(0)
        self.skip = set()
        self.declared_batch = None
        self.made = {}  # graph node -> (layer, its _Dyn inputs): for fusions with the producer

    # ------------------------------------------------------------ errors and names
    def fail(self, node, msg):
        where = f"node {node.name!r} ({node.op})" if node is not None else "graph"
        raise ValueError(f"{self.path}: {where}: {msg}")

    def unique(self, base):
        base = re.sub(r"[^A-Za-z0-9_]", "_", base).strip("_") or "node"
        if base[0].isdigit():
            base = "n_" + base
        name, k = base, 2
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    def node_name(self, node, weight=None):
        """Layers with weights are named after them (torch's "conv1.weight" -> "conv1"); other nodes after
        the innermost module scope the TorchScript exporter writes ("/layer1/layer1.0/Relu" ->
        "layer1_0_relu"; a folded conv -> "layer1_0_conv1"), else after the node name."""
        if weight:
            stem = weight[:-len(".weight")] if weight.endswith(".weight") else None
            if stem and "::" not in stem:
                return self.unique(stem)
        parts = node.name.strip("/").split("/")
        if node.name.startswith("/") and len(parts) >= 2:
            scope = []  # "/layers/layers.0/conv1/Conv": the scopes repeat their parent's prefix
            for c in parts[:-1]:
                if scope and c.startswith(scope[-1] + "."):
                    scope[-1] = c
                else:
                    scope.append(c)
            stem = "_".join(scope)
            return self.unique(stem if weight else f"{stem}_{node.op.lower()}")
        return self.unique(node.name.lstrip("/") or node.op.lower())

    # ------------------------------------------------------------ values
    def const(self, node, i, what="input", required=True):
        """Input ``i`` of ``node`` as a NumPy array (it must be a constant), or None when omitted."""
        name = node.inputs[i] if i < len(node.inputs) else ""
        if not name:
            if required:
                self.fail(node, f"its {what} (input {i}) is missing")
            return None
        v = self.values.get(name)
        if v is None:
            self.fail(node, f"reads {name!r}, which no node or initializer defines")
        if not isinstance(v, _Const):
            self.fail(node, f"its {what} {name!r} is not a constant initializer (a computed {what} is not supported)")
        return v.value

    def dyn(self, node, i=0):
        name = node.inputs[i] if i < len(node.inputs) else ""
        v = self.values.get(name) if name else None
        if v is None:
            self.fail(node, f"input {i} {name!r} is not defined")
        if not isinstance(v, _Dyn):
            self.fail(node, f"input {i} {name!r} is a constant where a computed tensor was expected")
        return v

    def is_const(self, name):
        return isinstance(self.values.get(name), _Const)

    def attr(self, node, key, default=None):
        return node.attrs.get(key, default)

    def add(self, node, layer, inputs, out=None, name=None):
        """Adds ``layer`` reading the _Dyn ``inputs``; runs it on their samples; binds ``out``."""
        name = name or self.node_name(node)
        refs = [v.ref for v in inputs]
        self.graph.add(name, layer, refs if layer.multi_input else refs[0])
        samples = [v.sample for v in inputs]
        try:
            with np.errstate(all="ignore"):
                y = layer.forward(samples if layer.multi_input else samples[0], training=False)
        except (ValueError, TypeError) as e:
            self.fail(node, f"the {type(layer).__name__} built for it rejects its input: {e}")
        layer.clear_cache()
        self.made[name] = (layer, list(inputs))
        v = _Dyn(name, y)
        if out is not None:
            self.values[out] = v
        return v

    # ------------------------------------------------------------ the passes
    def run(self):
        g = self.model.graph
        import onnx

        self.consts = {}
        for init in g.initializer:
            try:
                self.consts[init.name] = onnx.numpy_helper.to_array(init)
            except Exception as e:  # noqa: BLE001 - external data missing, bad raw data
                raise ValueError(f"{self.path}: initializer {init.name!r} cannot be read ({e})") from e
        for init in g.sparse_initializer:
            raise ValueError(f"{self.path}: sparse initializer {init.values.name!r} is not supported")
        nodes = [_Node(n.op_type, n.name or f"{n.op_type}_{k}", list(n.input), list(n.output),
                       {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}, n.domain)
                 for k, n in enumerate(g.node)]
        bad = [(n.op if n.domain in ("", "ai.onnx") else f"{n.domain}::{n.op}", n.name) for n in nodes
               if n.domain not in ("", "ai.onnx") or (n.op not in CONVERTERS and n.op not in FOLDABLE
                                                              and n.op != "Constant")]
        if bad:
            ops = sorted({b[0] for b in bad})
            listed = ", ".join(f"{op} (node {name!r})" for op, name in bad[:12]) + (" ..." if len(bad) > 12 else "")
            raise ValueError(f"{self.path}: unsupported op{'s' if len(ops) > 1 else ''} {', '.join(ops)}: {listed}. "
                             f"Supported: {', '.join(SUPPORTED_OPS)}")
        graph_outputs = [o.name for o in g.output]
        for name, value in self.consts.items():
            self.values[name] = _Const(value)
        # Constant nodes first, so that patterns see their values
        for n in nodes:
            if n.op == "Constant":
                self.values[n.outputs[0]] = _Const(self._constant(n))

        def const_value(name):
            v = self.values.get(name)
            return v.value if isinstance(v, _Const) else None

        nodes = fuse_gelu([n for n in nodes if n.op != "Constant"], const_value, graph_outputs,
                          lambda name, x, y, a: _Node("Gelu", name, [x], [y], {"approximate": a}))
        self.consumers = {}
        for n in nodes:
            for i in n.inputs:
                if i:
                    self.consumers.setdefault(i, []).append(n)
        self.graph_outputs = set(graph_outputs)
        self._inputs(g)
        for n in nodes:
            if id(n) in self.skip:
                continue
            ins = [self.values.get(i) if i else None for i in n.inputs]
            missing = [i for i, v in zip(n.inputs, ins) if i and v is None]
            if missing:
                self.fail(n, f"reads {missing[0]!r}, which no earlier node or initializer defines "
                             f"(the graph is not topologically sorted, or the file is damaged)")
            if n.op in FOLDABLE and n.op != "Shape" and all(v is None or isinstance(v, _Const) for v in ins) \
                    and any(v is not None for v in ins):
                try:
                    out = fold(n, [None if v is None else v.value for v in ins])
                except Exception as e:  # noqa: BLE001 - NumPy's own message says what was wrong
                    self.fail(n, f"cannot evaluate it on its constant inputs ({e})")
                self.values[n.outputs[0]] = _Const(out)
                continue
            conv = CONVERTERS.get(n.op)
            if conv is None:
                self.fail(n, "is supported only on constant inputs (shape arithmetic), here it reads a computed "
                             "tensor")
            conv(self, n)
            for extra in n.outputs[1:]:
                if extra and (extra in self.consumers or extra in self.graph_outputs) and extra not in self.values:
                    self.fail(n, f"its output {extra!r} (output {n.outputs.index(extra)}) is used, which is not "
                                 f"supported (only the first output of {n.op})")
        outs = []
        for o in graph_outputs:
            v = self.values.get(o)
            if v is None:
                raise ValueError(f"{self.path}: graph output {o!r} is not computed by any node")
            if isinstance(v, _Const):
                raise ValueError(f"{self.path}: graph output {o!r} is a constant; nothing to compute")
            if v.ref in self.graph.input_names or v.ref in outs:
                v = self.add(_Node("Identity", o, [], [o], {}), L.Identity(), [v], name=self.unique(o))
            outs.append(v.ref)
        self.graph._outputs = outs
        self.graph._order = None
        return self.graph

    def _constant(self, n):
        import onnx

        a = n.attrs
        if "value" in a:
            return onnx.numpy_helper.to_array(a["value"])
        for key, dt in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64),
                        ("value_ints", np.int64)):
            if key in a:
                return np.array(a[key], dt)
        self.fail(n, f"a Constant with attributes {sorted(a)} is not supported (value, value_float(s), value_int(s))")

    def _inputs(self, g):
        import onnx

        inits = set(self.consts)
        inputs = [i for i in g.input if i.name not in inits]
        if not inputs:
            raise ValueError(f"{self.path}: the graph has no input")
        names = []
        for inp in inputs:
            t = inp.type.tensor_type
            if not inp.type.HasField("tensor_type") or not t.HasField("shape"):
                raise ValueError(f"{self.path}: input {inp.name!r} has no tensor shape; pyconvnet needs static sizes "
                                 f"after the batch dimension")
            if t.elem_type not in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE):
                raise ValueError(f"{self.path}: input {inp.name!r} has element type "
                                 f"{onnx.TensorProto.DataType.Name(t.elem_type)}; expected a float tensor")
            dims = []
            for k, d in enumerate(t.shape.dim):
                if d.HasField("dim_value"):
                    dims.append(int(d.dim_value))
                elif k == 0:
                    dims.append(None)
                else:
                    label = d.dim_param or "unknown"
                    raise ValueError(f"{self.path}: input {inp.name!r} has a dynamic size {label!r} in dimension {k} "
                                     f"(shape {[x.dim_param or x.dim_value for x in t.shape.dim]}): an unresolvable "
                                     f"dynamic shape; only the batch dimension (0) may be dynamic. Re-export with "
                                     f"static image sizes")
            if len(dims) < 2:
                raise ValueError(f"{self.path}: input {inp.name!r} has shape {dims}; expected (N, ...) with a batch "
                                 f"dimension")
            if dims[0] is not None:
                self.declared_batch = dims[0]
            name = self.unique(inp.name)
            names.append(name)
            sample = self.rng.uniform(0.5, 1.5, (1,) + tuple(dims[1:])).astype(self.dtype)
            self.values[inp.name] = _Dyn(name, sample)
        self.graph = L.Graph(inputs=names)

    def batch_like(self, v):
        """Whether a shape entry stands for the batch size."""
        v = int(v)
        return v == BATCH or (self.declared_batch is not None and v == self.declared_batch)

    def unused_elsewhere(self, value):
        return value not in self.graph_outputs and len(self.consumers.get(value, ())) == 1


# ====================================================================== converters
def _nshape(x):
    """A computed tensor's shape as the user reads it: (N, C, H, W) with N the batch."""
    return "(N, " + ", ".join(str(d) for d in x.sample.shape[1:]) + ")"


def _pads2d(imp, n, x, kernel, strides, dilations):
    """ONNX pads/auto_pad of a 2-D window op as (top, bottom, left, right) for the input sample x."""
    auto = imp.attr(n, "auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("NOTSET", ""):
        pads = list(imp.attr(n, "pads", [0, 0, 0, 0]))
        if len(pads) != 4:
            imp.fail(n, f"pads {pads}: only 2-D windows (4 pads) are supported")
        if min(pads) < 0:
            imp.fail(n, f"negative pads {pads} are not supported")
        return pads[0], pads[2], pads[1], pads[3]
    if auto == "VALID":
        return 0, 0, 0, 0
    if auto not in ("SAME_UPPER", "SAME_LOWER"):
        imp.fail(n, f"auto_pad {auto!r} is not supported (NOTSET, VALID, SAME_UPPER, SAME_LOWER)")
    out = []
    for size, k, s, d in zip(x.sample.shape[2:], kernel, strides, dilations):
        o = -(-size // s)
        total = max((o - 1) * s + d * (k - 1) + 1 - size, 0)
        small = total // 2
        out += [small, total - small] if auto == "SAME_UPPER" else [total - small, small]
    return tuple(out)


def _ints2(imp, n, key, default):
    v = list(imp.attr(n, key, default))
    if len(v) != 2:
        imp.fail(n, f"{key} {v}: only 2-D (N, C, H, W) windows are supported")
    return tuple(int(a) for a in v)


def _conv(imp, n):
    x = imp.dyn(n)
    w = imp.const(n, 1, "weight")
    b = imp.const(n, 2, "bias", required=False)
    if w.ndim != 4 or x.sample.ndim != 4:
        imp.fail(n, f"only 2-D convolutions are supported (weight {w.shape}, input {x.sample.shape})")
    k = _ints2(imp, n, "kernel_shape", w.shape[2:])
    if k != tuple(w.shape[2:]):
        imp.fail(n, f"kernel_shape {k} does not match the weight {w.shape}")
    s = _ints2(imp, n, "strides", (1, 1))
    d = _ints2(imp, n, "dilations", (1, 1))
    group = int(imp.attr(n, "group", 1))
    t, bt, l, r = _pads2d(imp, n, x, k, s, d)
    # a zero Pad feeding only this Conv (TorchScript writes F.pad + conv so) becomes the conv's own padding
    src = imp.made.get(x.ref)
    if src is not None and isinstance(src[0], L.Pad2d) and src[0].mode == "constant" and src[0].value == 0.0 \
            and min(src[0].padding) >= 0 and imp.unused_elsewhere(n.inputs[0]):
        pl, pr, pt, pb = src[0].padding
        t, bt, l, r = t + pt, bt + pb, l + pl, r + pr
        del imp.graph._nodes[x.ref]
        imp.graph._order = None
        x = src[1][0]
    padding = (t, l) if (t, l) == (bt, r) else (t, bt, l, r)
    cin = w.shape[1] * group
    layer = L.Conv2d(cin, w.shape[0], k, stride=s, padding=padding, dilation=d, groups=group, bias=b is not None,
                     dtype=imp.dtype)
    _set(imp, n, layer, weight=w, bias=b)
    imp.add(n, layer, [x], n.outputs[0], imp.node_name(n, n.inputs[1]))


def _set(imp, n, layer, **arrays):
    state = {k: v for k, v in arrays.items() if v is not None}
    try:
        layer.load_state_dict(state, strict=False)
    except (ValueError, TypeError) as e:
        imp.fail(n, f"its weights do not fit a {type(layer).__name__}: {e}")


def _conv_transpose(imp, n):
    x = imp.dyn(n)
    w = imp.const(n, 1, "weight")
    b = imp.const(n, 2, "bias", required=False)
    if w.ndim != 4 or x.sample.ndim != 4:
        imp.fail(n, f"only 2-D transposed convolutions are supported (weight {w.shape})")
    if "output_shape" in n.attrs:
        imp.fail(n, "output_shape is not supported (give pads and output_padding, as torch.onnx writes)")
    auto = imp.attr(n, "auto_pad", b"NOTSET")
    if (auto.decode() if isinstance(auto, bytes) else auto) not in ("NOTSET", "VALID", ""):
        imp.fail(n, f"auto_pad {auto!r} is not supported for ConvTranspose (NOTSET, VALID)")
    k = _ints2(imp, n, "kernel_shape", w.shape[2:])
    s = _ints2(imp, n, "strides", (1, 1))
    d = _ints2(imp, n, "dilations", (1, 1))
    op = _ints2(imp, n, "output_padding", (0, 0))
    group = int(imp.attr(n, "group", 1))
    pads = list(imp.attr(n, "pads", [0, 0, 0, 0]))
    if len(pads) != 4 or min(pads) < 0:
        imp.fail(n, f"pads {pads}: expected 4 non-negative values")
    t, l, bt, r = pads
    ph, pw = min(t, bt), min(l, r)
    layer = L.ConvTranspose2d(w.shape[0], w.shape[1] * group, k, stride=s, padding=(ph, pw), output_padding=op,
                              groups=group, bias=b is not None, dilation=d, dtype=imp.dtype)
    _set(imp, n, layer, weight=w, bias=b)
    name = imp.node_name(n, n.inputs[1])
    if (t, bt, l, r) == (ph, ph, pw, pw):
        imp.add(n, layer, [x], n.outputs[0], name)
        return
    # asymmetric pads: the symmetric part in the layer, the rest cropped after it
    y = imp.add(n, layer, [x], None, name)
    crop = (-(l - pw), -(r - pw), -(t - ph), -(bt - ph))
    imp.add(n, L.Pad2d(crop), [y], n.outputs[0], imp.unique(name + "_crop"))


def _linear(imp, n, x, w, b, weight_name):
    """y = x @ w.T + b with w (out, in)."""
    layer = L.Linear(w.shape[1], w.shape[0], bias=b is not None, dtype=imp.dtype)
    _set(imp, n, layer, weight=w, bias=b)
    return layer, imp.node_name(n, weight_name)


def _gemm(imp, n):
    x = imp.dyn(n)
    w = imp.const(n, 1, "B (weight)")
    c = imp.const(n, 2, "C (bias)", required=False)
    if imp.attr(n, "transA", 0):
        imp.fail(n, "transA=1 is not supported (the batch must be the rows of A)")
    if x.sample.ndim != 2 or w.ndim != 2:
        imp.fail(n, f"expected a 2-D input and weight, got {x.sample.shape} and {w.shape}")
    alpha, beta = float(imp.attr(n, "alpha", 1.0)), float(imp.attr(n, "beta", 1.0))
    w = (w if imp.attr(n, "transB", 0) else w.T) * np.float32(alpha) if alpha != 1.0 else \
        (w if imp.attr(n, "transB", 0) else w.T)
    if c is not None:
        if c.size not in (1, w.shape[0]) or (c.ndim == 2 and c.shape[0] != 1):
            imp.fail(n, f"bias C of shape {c.shape} must broadcast to ({w.shape[0]},) (a per-sample C is not supported)")
        c = np.broadcast_to(c.reshape(-1), (w.shape[0],)) * beta
    layer, name = _linear(imp, n, x, np.ascontiguousarray(w), c, n.inputs[1])
    imp.add(n, layer, [x], n.outputs[0], name)


def _matmul(imp, n):
    a, b = n.inputs[:2]
    if imp.is_const(a):
        imp.fail(n, "a constant left operand is not supported (x @ W with W constant is)")
    x = imp.dyn(n)
    if not imp.is_const(b):
        imp.fail(n, "the product of two computed tensors is not supported (x @ W needs a constant W)")
    w = imp.const(n, 1, "weight")
    if w.ndim != 2:
        imp.fail(n, f"the constant operand has shape {w.shape}; expected a 2-D weight")
    bias, out = None, n.outputs[0]
    # MatMul + Add(bias): one Linear
    cons = imp.consumers.get(out, [])
    if len(cons) == 1 and cons[0].op == "Add" and imp.unused_elsewhere(out):
        add = cons[0]
        other = add.inputs[1] if add.inputs[0] == out else add.inputs[0]
        c = imp.values.get(other)
        if isinstance(c, _Const) and c.value.size == w.shape[1] and c.value.ndim <= 1 + (x.sample.ndim > 1):
            if c.value.ndim < 2 or c.value.shape[0] == 1:
                bias, out = c.value.reshape(-1), add.outputs[0]
                imp.skip.add(id(add))
    layer, name = _linear(imp, n, x, np.ascontiguousarray(w.T), bias, n.inputs[1])
    imp.add(n, layer, [x], out, name)


def _pool(imp, n):
    x = imp.dyn(n)
    if x.sample.ndim != 4:
        imp.fail(n, f"only 2-D pooling of (N, C, H, W) is supported, got an input of shape {_nshape(x)}")
    k = _ints2(imp, n, "kernel_shape", ())
    s = _ints2(imp, n, "strides", (1, 1))
    d = _ints2(imp, n, "dilations", (1, 1))
    ceil = bool(imp.attr(n, "ceil_mode", 0))
    if imp.attr(n, "storage_order", 0):
        imp.fail(n, "storage_order=1 is not supported")
    t, bt, l, r = _pads2d(imp, n, x, k, s, d)
    is_max = n.op == "MaxPool"
    if not is_max and d != (1, 1):
        imp.fail(n, f"dilations {d} are not supported for AveragePool")
    include = bool(imp.attr(n, "count_include_pad", 0))
    sym = (t, l) == (bt, r) and 2 * t <= k[0] and 2 * l <= k[1]
    if sym:
        layer = L.MaxPool2d(k, s, (t, l), d, ceil) if is_max else L.AvgPool2d(k, s, (t, l), ceil, include)
        imp.add(n, layer, [x], n.outputs[0])
        return
    if not is_max and not include:
        imp.fail(n, f"asymmetric pads {(t, l, bt, r)} with count_include_pad=0 are not supported")
    # explicit padding: -inf never wins a max; zeros counted in the average as count_include_pad says
    y = imp.add(n, L.Pad2d((l, r, t, bt), value=-math.inf if is_max else 0.0), [x], None,
                imp.unique(n.name.lstrip("/") + "_pad"))
    layer = L.MaxPool2d(k, s, 0, d, ceil) if is_max else L.AvgPool2d(k, s, 0, ceil, True)
    imp.add(n, layer, [y], n.outputs[0])


def _global_pool(imp, n):
    x = imp.dyn(n)
    if x.sample.ndim != 4:
        imp.fail(n, f"only (N, C, H, W) inputs are supported, got {_nshape(x)}")
    imp.add(n, L.GlobalAvgPool2d() if n.op == "GlobalAveragePool" else L.GlobalMaxPool2d(), [x], n.outputs[0])


def _reduce(imp, n):
    x = imp.dyn(n)
    axes = imp.const(n, 1, "axes", required=False)
    axes = [int(a) for a in axes.reshape(-1)] if axes is not None else imp.attr(n, "axes")
    nd = x.sample.ndim
    if axes is None or not len(axes):
        imp.fail(n, "a reduction over all axes (the batch included) is not supported")
    axes = sorted({a % nd for a in axes})
    if nd != 4 or axes != [2, 3]:
        imp.fail(n, f"only reductions over the spatial axes [2, 3] of (N, C, H, W) are supported (adaptive pooling), "
                    f"got axes {axes} for rank {nd}")
    keep = bool(imp.attr(n, "keepdims", 1))
    layer = L.GlobalAvgPool2d() if n.op == "ReduceMean" else L.GlobalMaxPool2d()
    if keep:
        imp.add(n, layer, [x], n.outputs[0])
    else:
        y = imp.add(n, layer, [x])
        imp.add(n, L.Flatten(), [y], n.outputs[0], imp.unique(n.name.lstrip("/") + "_flat"))


def _batchnorm(imp, n):
    x = imp.dyn(n)
    if imp.attr(n, "training_mode", 0):
        imp.fail(n, "training_mode=1 is not supported (export the model in eval mode)")
    scale, bias = imp.const(n, 1, "scale"), imp.const(n, 2, "B")
    mean, var = imp.const(n, 3, "mean"), imp.const(n, 4, "var")
    c = scale.size
    nd = x.sample.ndim
    if nd not in (2, 3, 4):
        imp.fail(n, f"inputs of rank {nd} are not supported")
    eps = float(imp.attr(n, "epsilon", 1e-5))
    momentum = 1.0 - float(imp.attr(n, "momentum", 0.9))  # ONNX keeps momentum * running
    cls = L.BatchNorm2d if nd == 4 else L.BatchNorm1d
    layer = cls(c, eps=eps, momentum=min(max(momentum, 0.0), 1.0), dtype=imp.dtype)
    _set(imp, n, layer, weight=scale, bias=bias, running_mean=mean, running_var=var)
    imp.add(n, layer, [x], n.outputs[0], imp.node_name(n, n.inputs[1]))


def _simple(factory):
    def conv(imp, n):
        imp.add(n, factory(imp, n), [imp.dyn(n)], n.outputs[0])
    return conv


def _axis_arg(imp, n, default):
    x = imp.dyn(n)
    a = int(imp.attr(n, "axis", default))
    a %= x.sample.ndim
    if a == 0:
        imp.fail(n, "an axis over the batch (0) is not supported")
    return a


def _gelu_factory(imp, n):
    a = imp.attr(n, "approximate", "none")
    a = a.decode() if isinstance(a, bytes) else a
    if a not in ("none", "tanh"):
        imp.fail(n, f"approximate={a!r} is not supported")
    return L.GELU(a)


def _flatten(imp, n):
    x = imp.dyn(n)
    axis = int(imp.attr(n, "axis", 1)) % max(x.sample.ndim, 1)
    if axis == 0:
        imp.fail(n, "Flatten with axis=0 merges the batch dimension; not supported")
    if axis == 1:
        imp.add(n, L.Flatten(), [x], n.outputs[0])
        return
    if math.prod(x.sample.shape[1:axis]) != 1:
        imp.fail(n, f"Flatten(axis={axis}) of {_nshape(x)} merges the batch with other dimensions")
    imp.add(n, L.Reshape((math.prod(x.sample.shape[axis:]),)), [x], n.outputs[0])


def _reshape_target(imp, n, x, target, allowzero):
    """The per-sample shape of Reshape(x, target), or a ValueError."""
    t = [int(v) for v in target]
    src = (BATCH,) + x.sample.shape[1:]
    if not allowzero:
        t = [src[i] if v == 0 and i < len(src) else v for i, v in enumerate(t)]
    if not t:
        imp.fail(n, "a reshape to a scalar drops the batch dimension")
    bad = [v for v in t if is_batch_derived(v)]
    if bad:
        imp.fail(n, f"target shape {target.tolist()} holds a size computed from the batch size: an unresolvable "
                    f"dynamic shape")
    rest = t[1:]
    if any(imp.batch_like(v) for v in rest if v != 1):
        imp.fail(n, f"target shape {target.tolist()} moves the batch dimension (it must stay first)")
    size = math.prod(x.sample.shape[1:])
    if imp.batch_like(t[0]) or (t[0] == 1 and imp.declared_batch == 1):
        pass
    elif t[0] == -1:
        if -1 in rest or math.prod(rest) != size:
            imp.fail(n, f"target shape {target.tolist()} would merge the batch with other dimensions "
                        f"(per-sample size {size})")
    else:
        imp.fail(n, f"target shape {target.tolist()} fixes the batch dimension to {t[0]}; the batch must stay dynamic")
    if rest.count(-1) > 1:
        imp.fail(n, f"target shape {target.tolist()} has more than one -1")
    if -1 in rest:
        known = math.prod(v for v in rest if v != -1)
        if known == 0 or size % known:
            imp.fail(n, f"cannot reshape a sample of shape {x.sample.shape[1:]} to {rest}")
        rest = [size // known if v == -1 else v for v in rest]
    if math.prod(rest) != size:
        imp.fail(n, f"cannot reshape a sample of shape {x.sample.shape[1:]} to {tuple(rest)}")
    return tuple(rest)


def _reshape(imp, n):
    x = imp.dyn(n)
    target = imp.const(n, 1, "shape")
    rest = _reshape_target(imp, n, x, target, imp.attr(n, "allowzero", 0))
    if rest == x.sample.shape[1:]:
        imp.values[n.outputs[0]] = x
        return
    imp.add(n, L.Flatten() if len(rest) == 1 else L.Reshape(rest), [x], n.outputs[0])


def _squeeze_like(imp, n):
    x = imp.dyn(n)
    axes = imp.const(n, 1, "axes", required=False)
    axes = [int(a) for a in axes.reshape(-1)] if axes is not None else imp.attr(n, "axes")
    shape = list(x.sample.shape)
    if n.op == "Squeeze":
        axes = [a % len(shape) for a in axes] if axes is not None else [i for i, v in enumerate(shape) if v == 1 and i]
        if 0 in axes or any(shape[a] != 1 for a in axes):
            imp.fail(n, f"cannot squeeze axes {axes} of {_nshape(x)}")
        rest = [v for i, v in enumerate(shape) if i not in axes][1:]
    else:
        if axes is None:
            imp.fail(n, "Unsqueeze without axes")
        nd = len(shape) + len(axes)
        axes = sorted(a % nd for a in axes)
        if 0 in axes:
            imp.fail(n, "unsqueezing axis 0 moves the batch dimension")
        for a in axes:
            shape.insert(a, 1)
        rest = shape[1:]
    imp.add(n, L.Reshape(tuple(rest)), [x], n.outputs[0])


def _transpose(imp, n):
    x = imp.dyn(n)
    perm = list(imp.attr(n, "perm", list(range(x.sample.ndim))[::-1]))
    if not perm or perm[0] != 0:
        imp.fail(n, f"perm {perm} moves the batch dimension (perm[0] must be 0)")
    if perm == sorted(perm):
        imp.values[n.outputs[0]] = x
        return
    imp.add(n, L.Transpose(tuple(perm)), [x], n.outputs[0])


def _concat(imp, n):
    vals = [imp.values.get(i) for i in n.inputs]
    if any(isinstance(v, _Const) for v in vals):
        imp.fail(n, "concatenating a constant with computed tensors is not supported")
    xs = [imp.dyn(n, i) for i in range(len(n.inputs))]
    axis = int(imp.attr(n, "axis")) % xs[0].sample.ndim
    if axis == 0:
        imp.fail(n, "concatenation along the batch axis is not supported")
    if len(xs) == 1:
        imp.values[n.outputs[0]] = xs[0]
        return
    imp.add(n, L.Concat(axis), xs, n.outputs[0])


_ARITH = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Pow": "pow"}


def _arith(imp, n):
    a, b = (imp.values.get(i) for i in n.inputs[:2])
    op = _ARITH[n.op]
    if isinstance(a, _Dyn) and isinstance(b, _Dyn):
        if op == "pow":
            imp.fail(n, "a computed exponent is not supported (Pow by a constant is)")
        if op == "add" and a.sample.shape == b.sample.shape:
            imp.add(n, L.Add(), [a, b], n.outputs[0])
        else:
            imp.add(n, L.Elementwise(op), [a, b], n.outputs[0])
        return
    x, c, reverse = (a, b.value, False) if isinstance(a, _Dyn) else (b, a.value, True)
    if c.dtype.kind not in "fiu":
        imp.fail(n, f"a constant of dtype {c.dtype} is not supported")
    if c.ndim > x.sample.ndim or (c.ndim == x.sample.ndim and c.shape[0] != 1):
        imp.fail(n, f"the constant of shape {c.shape} broadcasts over the batch dimension of (N, "
                    f"{', '.join(map(str, x.sample.shape[1:]))})")
    if op in ("add", "mul"):
        reverse = False  # commutative: x op c
    if op in ("add", "sub") and not reverse and not np.any(c):
        imp.values[n.outputs[0]] = x  # x + 0 (exporters write these around skips)
        return
    imp.add(n, L.ConstantArith(op, c, reverse=reverse, dtype=imp.dtype), [x], n.outputs[0])


def _source_index(mode, nearest, out, size, scale):
    """ONNX Resize's nearest-neighbour source index of each output position along one axis."""
    i = np.arange(out, dtype=np.float64)
    if mode == "asymmetric":
        xo = i / scale
    elif mode == "half_pixel":
        xo = (i + 0.5) / scale - 0.5
    elif mode == "pytorch_half_pixel":
        xo = (i + 0.5) / scale - 0.5 if out > 1 else np.zeros(out)
    elif mode == "tf_half_pixel_for_nn":
        xo = (i + 0.5) / scale
    elif mode == "align_corners":
        xo = i * (size - 1) / (out - 1) if out > 1 else np.zeros(out)
    else:
        return None
    rounding = {"floor": np.floor, "ceil": np.ceil, "round_prefer_floor": lambda v: np.ceil(v - 0.5),
                "round_prefer_ceil": lambda v: np.floor(v + 0.5)}.get(nearest)
    if rounding is None:
        return None
    return np.clip(rounding(xo), 0, size - 1).astype(np.int64)


def _resize(imp, n):
    x = imp.dyn(n)
    if x.sample.ndim != 4:
        imp.fail(n, f"only (N, C, H, W) inputs are supported, got {_nshape(x)}")

    def text(key, default):
        v = imp.attr(n, key, default)
        return v.decode() if isinstance(v, bytes) else v

    mode = text("mode", "nearest")
    if mode != "nearest":
        imp.fail(n, f"mode {mode!r} is not supported (only 'nearest')")
    if n.op == "Upsample":
        coord, nearest = "asymmetric", "floor"
        scales, sizes = imp.const(n, 1, "scales"), None
    else:
        coord = text("coordinate_transformation_mode", "half_pixel")
        nearest = text("nearest_mode", "round_prefer_floor")
        if text("keep_aspect_ratio_policy", "stretch") != "stretch" or imp.attr(n, "antialias", 0):
            imp.fail(n, "keep_aspect_ratio_policy / antialias are not supported")
        if imp.attr(n, "axes") is not None and list(imp.attr(n, "axes")) not in ([2, 3], [-2, -1]):
            imp.fail(n, f"axes {list(imp.attr(n, 'axes'))} are not supported")
        scales = imp.const(n, 2, "scales", required=False)
        sizes = imp.const(n, 3, "sizes", required=False)
        if scales is not None and scales.size == 0:
            scales = None
        if sizes is not None and sizes.size == 0:
            sizes = None
    h, w = x.sample.shape[2:]
    if sizes is not None:
        sz = [int(v) for v in sizes.reshape(-1)][-2:]
        lead = [int(v) for v in sizes.reshape(-1)][:-2]
        if lead and (not imp.batch_like(lead[0]) or lead[1:] != [x.sample.shape[1]]):
            if not (lead == [1, x.sample.shape[1]] and imp.declared_batch == 1):
                imp.fail(n, f"sizes {sizes.tolist()} resize the batch or channel dimensions")
        oh, ow = sz
        sc = (oh / h, ow / w)
    elif scales is not None:
        s = [float(v) for v in scales.reshape(-1)]
        if len(s) == 4 and s[:2] != [1.0, 1.0]:
            imp.fail(n, f"scales {s} resize the batch or channel dimensions")
        sc = tuple(s[-2:])
        oh, ow = int(math.floor(h * sc[0])), int(math.floor(w * sc[1]))
    else:
        imp.fail(n, "neither scales nor sizes is given")
    want = [_source_index(coord, nearest, o, size, s) for o, size, s in ((oh, h, sc[0]), (ow, w, sc[1]))]
    if want[0] is None or want[1] is None:
        imp.fail(n, f"coordinate_transformation_mode {coord!r} with nearest_mode {nearest!r} is not supported")
    candidates = []
    if all(float(v).is_integer() for v in sc) and (oh, ow) == (h * int(sc[0]), w * int(sc[1])):
        candidates.append(L.Upsample(scale_factor=(int(sc[0]), int(sc[1]))))
    candidates.append(L.Upsample(size=(oh, ow)))
    # which Upsample picks the pixels ONNX picks: run each candidate on an image of pixel indices
    probe = np.arange(h * w, dtype=np.float64).reshape(1, 1, h, w)
    expect = want[0][:, None] * w + want[1][None, :]
    for layer in candidates:
        got = layer.forward(probe)
        layer.clear_cache()
        if got.shape[2:] == expect.shape and np.array_equal(got[0, 0], expect):
            imp.add(n, layer, [x], n.outputs[0])
            return
    imp.fail(n, f"nearest resizing {h}x{w} -> {oh}x{ow} with coordinate_transformation_mode {coord!r} and "
                f"nearest_mode {nearest!r} picks pixels that no Upsample picks (torch's 'nearest' does)")


def _depth_to_space(imp, n):
    x = imp.dyn(n)
    mode = imp.attr(n, "mode", b"DCR")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    r = int(imp.attr(n, "blocksize"))
    if mode not in ("CRD", "DCR"):
        imp.fail(n, f"mode {mode!r} is not supported (CRD: torch's PixelShuffle, DCR)")
    if x.sample.ndim != 4 or x.sample.shape[1] % (r * r):
        imp.fail(n, f"expected (N, C*{r * r}, H, W), got {_nshape(x)}")
    if mode == "CRD":
        imp.add(n, L.PixelShuffle(r), [x], n.outputs[0])
        return
    # DCR (TensorFlow's order): channel (i*r + j)*C + c -> the spec's reshape / transpose / reshape
    _, crr, h, w = x.sample.shape
    c = crr // (r * r)
    base = n.name.lstrip("/") or "depth_to_space"
    y = imp.add(n, L.Reshape((r, r, c, h, w)), [x], None, imp.unique(base + "_split"))
    y = imp.add(n, L.Transpose((0, 3, 4, 1, 5, 2)), [y], None, imp.unique(base + "_perm"))
    imp.add(n, L.Reshape((c, h * r, w * r)), [y], n.outputs[0], imp.unique(base))


def _sum(imp, n):
    xs = [imp.dyn(n, i) for i in range(len(n.inputs))]
    if len(xs) == 1:
        imp.values[n.outputs[0]] = xs[0]
    elif all(v.sample.shape == xs[0].sample.shape for v in xs):
        imp.add(n, L.Add(), xs, n.outputs[0])
    else:
        imp.fail(n, "Sum of tensors of different shapes (broadcasting) is not supported")


def _dropout(imp, n):
    x = imp.dyn(n)
    ratio = imp.const(n, 1, "ratio", required=False)
    p = float(ratio.reshape(-1)[0]) if ratio is not None else float(imp.attr(n, "ratio", 0.5))
    training = imp.const(n, 2, "training_mode", required=False)
    if training is not None and bool(training.reshape(-1)[0]):
        imp.fail(n, "training_mode=True is not supported (export in eval mode)")
    if p <= 0.0:
        imp.values[n.outputs[0]] = x
    else:
        imp.add(n, L.Dropout(p), [x], n.outputs[0])


def _identity(imp, n):
    imp.values[n.outputs[0]] = imp.dyn(n)


def _pad(imp, n):
    x = imp.dyn(n)
    mode = imp.attr(n, "mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode not in ("constant", "reflect", "edge"):
        imp.fail(n, f"mode {mode!r} is not supported (constant, reflect, edge)")
    pads = imp.const(n, 1, "pads") if len(n.inputs) > 1 and n.inputs[1] else np.array(imp.attr(n, "pads"))
    value = imp.const(n, 2, "constant_value", required=False)
    axes = imp.const(n, 3, "axes", required=False)
    nd = x.sample.ndim
    pads = [int(v) for v in pads.reshape(-1)]
    axes = list(range(nd)) if axes is None else [int(a) % nd for a in axes.reshape(-1)]
    if len(pads) != 2 * len(axes):
        imp.fail(n, f"{len(pads)} pads for {len(axes)} axes")
    begin, end = [0] * nd, [0] * nd
    for k, a in enumerate(axes):
        begin[a], end[a] = pads[k], pads[k + len(axes)]
    if nd < 3 or any(begin[a] or end[a] for a in range(nd - 2)):
        imp.fail(n, f"pads {pads} pad other than the last two dimensions of {_nshape(x)}; only "
                    f"spatial padding is supported")
    v = 0.0 if value is None or value.size == 0 else float(value.reshape(-1)[0])
    p = (begin[-1], end[-1], begin[-2], end[-2])
    if not any(p):
        imp.values[n.outputs[0]] = x
        return
    imp.add(n, L.Pad2d(p, "replicate" if mode == "edge" else mode, v), [x], n.outputs[0])


def _clip(imp, n):
    x = imp.dyn(n)
    lo = imp.const(n, 1, "min", required=False)
    hi = imp.const(n, 2, "max", required=False)
    lo = float(lo.reshape(-1)[0]) if lo is not None else float(imp.attr(n, "min", -math.inf))
    hi = float(hi.reshape(-1)[0]) if hi is not None else float(imp.attr(n, "max", math.inf))
    if lo > hi:
        imp.fail(n, f"min {lo} > max {hi}")
    layer = L.ReLU() if (lo == 0.0 and hi == math.inf) else L.ReLU6() if (lo, hi) == (0.0, 6.0) else L.Hardtanh(lo, hi)
    imp.add(n, layer, [x], n.outputs[0])


def _shape(imp, n):
    v = imp.values.get(n.inputs[0])
    if isinstance(v, _Const):
        shape = np.array(v.value.shape, np.int64)
    else:
        shape = np.array((BATCH,) + v.sample.shape[1:], np.int64)
    start, end = imp.attr(n, "start", 0), imp.attr(n, "end")
    imp.values[n.outputs[0]] = _Const(shape[start:end])


CONVERTERS = {
    "Conv": _conv,
    "ConvTranspose": _conv_transpose,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "MaxPool": _pool,
    "AveragePool": _pool,
    "GlobalAveragePool": _global_pool,
    "GlobalMaxPool": _global_pool,
    "ReduceMean": _reduce,
    "ReduceMax": _reduce,
    "BatchNormalization": _batchnorm,
    "Relu": _simple(lambda imp, n: L.ReLU()),
    "LeakyRelu": _simple(lambda imp, n: L.LeakyReLU(float(imp.attr(n, "alpha", 0.01)))),
    "Sigmoid": _simple(lambda imp, n: L.Sigmoid()),
    "Tanh": _simple(lambda imp, n: L.Tanh()),
    "Gelu": _simple(_gelu_factory),
    "Erf": _simple(lambda imp, n: L.Erf()),
    "Softmax": _simple(lambda imp, n: L.Softmax(_axis_arg(imp, n, -1))),
    "LogSoftmax": _simple(lambda imp, n: L.LogSoftmax(_axis_arg(imp, n, -1))),
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Squeeze": _squeeze_like,
    "Unsqueeze": _squeeze_like,
    "Transpose": _transpose,
    "Concat": _concat,
    "Add": _arith,
    "Sub": _arith,
    "Mul": _arith,
    "Div": _arith,
    "Pow": _arith,
    "Resize": _resize,
    "Upsample": _resize,
    "DepthToSpace": _depth_to_space,
    "Sum": _sum,
    "Dropout": _dropout,
    "Identity": _identity,
    "Pad": _pad,
    "Clip": _clip,
    "Shape": _shape,
}

# The ops load() reads (on computed tensors), then those read only on constants (shape arithmetic).
SUPPORTED_OPS = tuple(sorted(set(CONVERTERS) | {"Constant"})) + tuple(
    sorted(set(FOLDABLE) - set(CONVERTERS) - {"Constant"}))


# ====================================================================== entry points
def _read(path):
    import onnx

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"{path}: cannot read the file ({e})") from e
    if not data:
        raise ValueError(f"{path}: the file is empty; not an ONNX model")
    try:
        model = onnx.load_from_string(data)
    except Exception as e:  # noqa: BLE001 - protobuf's DecodeError and friends
        raise ValueError(f"{path}: not an ONNX model, or a truncated one (the protobuf does not parse: {e})") from e
    if not model.HasField("graph") or model.ir_version <= 0 or not model.opset_import:
        raise ValueError(f"{path}: not an ONNX model, or a truncated one (no graph, IR version or opset)")
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        try:
            onnx.external_data_helper.load_external_data_for_model(model, os.path.dirname(os.path.abspath(path)))
        except Exception as e:  # noqa: BLE001
            raise ValueError(f"{path}: its external weight data cannot be read ({e})") from e
    try:
        onnx.checker.check_model(model)
    except Exception as e:  # noqa: BLE001 - onnx.checker.ValidationError
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not a valid ONNX model ({first})") from e
    return model


def metadata(path) -> dict:
    """The model's metadata_props (what :func:`pyconvnet.onnx.export` stored, e.g. the data set)."""
    model = _read(path)
    return {p.key: p.value for p in model.metadata_props}


def load(path, *, dtype=np.float32):
    """Reads the ONNX file ``path`` into a :class:`pyconvnet.layers.Graph` of our layers (parameters
    as ours: ``fit`` fine-tunes it, ``save_checkpoint`` saves it). Its inputs and outputs are those of
    the file (names made valid); nodes with weights are named after them (``conv1.weight`` -> node
    ``conv1``). ``dtype``: of the parameters (float32, or float64).

    Supported: ``SUPPORTED_OPS``, opset 13 and up, the batch dimension dynamic or fixed and every other
    size static. Anything else -- an unsupported op or attribute value, weights that are computed
    instead of constant, a truncated or foreign file -- is a ValueError naming the file, the node and
    the problem, raised before any model is returned."""
    import onnx

    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype: expected float32 or float64, got {dtype}")
    model = _read(path)
    path = os.fspath(path)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None or opset < MIN_OPSET:
        raise ValueError(f"{path}: opset {opset} is older than {MIN_OPSET}, the oldest pyconvnet reads; re-export "
                         f"with opset_version={MIN_OPSET} or later")
    if model.functions:
        model = onnx.inliner.inline_local_functions(model)
    return _Importer(path, model, dtype).run()
