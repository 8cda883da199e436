"""A Sequential / Graph of our layers -> an ONNX file: ``export(model, path, input_shape)``.

The inference form: batch norm as BatchNormalization with the running statistics,
dropout as nothing, the batch dimension symbolic ("N"). Every layer of
``EXPORTABLE_LAYERS`` maps to standard ONNX ops (the table below); the exporter runs the
model once on a zero batch to learn each layer's input shape, and a layer without an
ONNX form is a ValueError naming it.

Two layers need a decision:

* ``GELU``: the ``Gelu`` op from opset 20; below it the expansion torch writes
  (Div / Erf / Add / Mul, or the tanh form), which :func:`pyconvnet.onnx.load` fuses back.
* ``RelaxedConv`` (the relaxed receptive field paper): the receptive field is exported as
  it is used at inference. Discrete mode (argmax table ``index``, -1 = zero padding): a
  zero column appended to x (Pad), ``Gather`` of the k sources of every output position,
  then the mixing with the weight as one ``MatMul``. Relaxed mode: ``MatMul`` of x with
  the softmaxed L (n_in, n_out*k), then the same MatMul with the weight. Both are one or
  two GEMMs in ONNX Runtime, the same work as our kernels.
"""
from __future__ import annotations

import json
import math
import os
import tempfile

import numpy as np

from .. import layers as L
from ..functional.conv import _conv_padding

__all__ = ["export", "EXPORTABLE_LAYERS", "DEFAULT_OPSET"]

DEFAULT_OPSET = 17
MIN_OPSET = 13


class _Builder:
    def __init__(self, opset):
        import onnx

        self.onnx = onnx
        self.h = onnx.helper
        self.opset = opset
        self.nodes, self.inits, self.used = [], [], set()

    def name(self, base):
        n, k = base, 2
        while n in self.used:
            n, k = f"{base}_{k}", k + 1
        self.used.add(n)
        return n

    def const(self, base, value, dtype=np.float32):
        name = self.name(base)
        self.inits.append(self.onnx.numpy_helper.from_array(np.ascontiguousarray(np.asarray(value, dtype)), name))
        return name

    def ints(self, base, values):
        return self.const(base, np.array(values, np.int64), np.int64)

    def node(self, op, inputs, base, n_out=1, **attrs):
        outs = [self.name(base if i == 0 else f"{base}_out{i}") for i in range(n_out)]
        self.nodes.append(self.h.make_node(op, inputs, outs, name=self.name(f"{base}/{op}"), **attrs))
        return outs[0] if n_out == 1 else outs


def _w(layer, key):
    return layer._params[key].astype(np.float32)


# ---------------------------------------------------------------------- one function per layer class
def _linear(b, layer, name, x, shape):
    bias = b.const(f"{name}.bias", _w(layer, "bias")) if layer.bias else None
    if len(shape) == 2:
        w = b.const(f"{name}.weight", _w(layer, "weight"))
        return b.node("Gemm", [x, w] + ([bias] if bias else []), name, transB=1)
    # (..., in) inputs: MatMul with the transposed weight, then the bias
    y = b.node("MatMul", [x, b.const(f"{name}.weight_t", _w(layer, "weight").T)], name if bias is None else f"{name}_mm")
    return b.node("Add", [y, bias], name) if bias else y


def _conv(b, layer, name, x, shape):
    t, bt, l, r = _conv_padding(layer.padding, layer.kernel_size, layer.stride, layer.dilation)
    ins = [x, b.const(f"{name}.weight", _w(layer, "weight"))]
    if layer.bias:
        ins.append(b.const(f"{name}.bias", _w(layer, "bias")))
    return b.node("Conv", ins, name, kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                  pads=[t, l, bt, r], dilations=list(layer.dilation), group=layer.groups)


def _conv_transpose(b, layer, name, x, shape):
    ph, pw = layer.padding
    ins = [x, b.const(f"{name}.weight", _w(layer, "weight"))]
    if layer.bias:
        ins.append(b.const(f"{name}.bias", _w(layer, "bias")))
    return b.node("ConvTranspose", ins, name, kernel_shape=list(layer.kernel_size), strides=list(layer.stride),
                  pads=[ph, pw, ph, pw], dilations=list(layer.dilation), group=layer.groups,
                  output_padding=list(layer.output_padding))


def _pool(b, layer, name, x, shape):
    ph, pw = layer.padding
    attrs = dict(kernel_shape=list(layer.kernel_size), strides=list(layer.stride), pads=[ph, pw, ph, pw],
                 ceil_mode=int(layer.ceil_mode))
    if isinstance(layer, L.MaxPool2d):
        if layer.dilation != (1, 1):
            attrs["dilations"] = list(layer.dilation)
        return b.node("MaxPool", [x], name, **attrs)
    return b.node("AveragePool", [x], name, count_include_pad=int(layer.count_include_pad), **attrs)


def _adaptive(b, layer, name, x, shape):
    h, w = shape[2:]
    oh, ow = (h if v is None else v for v, h in zip(layer.output_size, (h, w)))
    if (oh, ow) == (1, 1):
        return b.node("GlobalAveragePool" if isinstance(layer, L.AdaptiveAvgPool2d) else "GlobalMaxPool", [x], name)
    if h % oh or w % ow:
        raise ValueError(f"{type(layer).__name__} to {(oh, ow)} of a {h}x{w} input has windows of unequal sizes; "
                         f"only output sizes dividing the input export (as fixed pooling windows)")
    k = [h // oh, w // ow]
    op = "AveragePool" if isinstance(layer, L.AdaptiveAvgPool2d) else "MaxPool"
    return b.node(op, [x], name, kernel_shape=k, strides=k)


def _batchnorm(b, layer, name, x, shape):
    c = layer.num_features
    scale = _w(layer, "weight") if layer.affine else np.ones(c, np.float32)
    bias = _w(layer, "bias") if layer.affine else np.zeros(c, np.float32)
    ins = [x, b.const(f"{name}.weight", scale), b.const(f"{name}.bias", bias),
           b.const(f"{name}.running_mean", layer._buffers["running_mean"]),
           b.const(f"{name}.running_var", layer._buffers["running_var"])]
    return b.node("BatchNormalization", ins, name, epsilon=layer.eps, momentum=1.0 - (layer.momentum or 0.1))


def _gelu(b, layer, name, x, shape):
    if b.opset >= 20:
        return b.node("Gelu", [x], name, approximate=layer.approximate)
    if layer.approximate == "none":  # torch's expansion: x * 0.5 * (1 + erf(x / sqrt 2))
        e = b.node("Erf", [b.node("Div", [x, b.const(f"{name}.sqrt2", math.sqrt(2.0))], f"{name}_div")], f"{name}_erf")
        s = b.node("Add", [e, b.const(f"{name}.one", 1.0)], f"{name}_add")
    else:  # x * 0.5 * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
        cube = b.node("Mul", [x, b.node("Mul", [x, x], f"{name}_sq")], f"{name}_cube")
        inner = b.node("Add", [x, b.node("Mul", [cube, b.const(f"{name}.c", 0.044715)], f"{name}_c3")], f"{name}_in")
        t = b.node("Tanh", [b.node("Mul", [inner, b.const(f"{name}.k", math.sqrt(2 / math.pi))], f"{name}_u")],
                   f"{name}_tanh")
        s = b.node("Add", [t, b.const(f"{name}.one", 1.0)], f"{name}_add")
    return b.node("Mul", [b.node("Mul", [x, s], f"{name}_mul"), b.const(f"{name}.half", 0.5)], name)


def _clip(b, layer, name, x, shape):
    return b.node("Clip", [x, b.const(f"{name}.min", layer.min_val), b.const(f"{name}.max", layer.max_val)], name)


def _flatten(b, layer, name, x, shape):
    if layer.start_dim == 1:
        return b.node("Flatten", [x], name, axis=1)
    return b.node("Reshape", [x, b.ints(f"{name}.shape", [0] * layer.start_dim + [-1])], name)


def _upsample(b, layer, name, x, shape):
    attrs = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
    if layer.scale_factor is not None:
        sh, sw = layer.scale_factor
        return b.node("Resize", [x, "", b.const(f"{name}.scales", [1.0, 1.0, sh, sw])], name, **attrs)
    # sizes (N, C, OH, OW) with N from the input's shape: the batch stays dynamic
    nc = b.node("Slice", [b.node("Shape", [x], f"{name}_shape"), b.ints(f"{name}.s0", [0]), b.ints(f"{name}.s2", [2])],
                f"{name}_nc")
    sizes = b.node("Concat", [nc, b.ints(f"{name}.size", list(layer.size))], f"{name}_sizes", axis=0)
    return b.node("Resize", [x, "", "", sizes], name, **attrs)


def _pixel_unshuffle(b, layer, name, x, shape):
    r = layer.downscale_factor
    _, c, hr, wr = shape
    y = b.node("Reshape", [x, b.ints(f"{name}.shape6", [0, c, hr // r, r, wr // r, r])], f"{name}_split")
    y = b.node("Transpose", [y], f"{name}_perm", perm=[0, 1, 3, 5, 2, 4])
    return b.node("Reshape", [y, b.ints(f"{name}.shape4", [0, c * r * r, hr // r, wr // r])], name)


def _pad(b, layer, name, x, shape):
    left, right, top, bottom = layer.padding
    nd = len(shape)
    pads = [0] * (nd - 2) + [top, left] + [0] * (nd - 2) + [bottom, right]
    mode = {"constant": "constant", "reflect": "reflect", "replicate": "edge"}[layer.mode]
    ins = [x, b.ints(f"{name}.pads", pads)]
    if layer.mode == "constant" and layer.value != 0.0:
        ins.append(b.const(f"{name}.value", layer.value))
    return b.node("Pad", ins, name, mode=mode)


_ARITH_OPS = {"add": "Add", "sub": "Sub", "mul": "Mul", "div": "Div", "pow": "Pow"}


def _constant_arith(b, layer, name, x, shape):
    c = b.const(f"{name}.constant", layer.constant)
    return b.node(_ARITH_OPS[layer.op], [c, x] if layer.reverse else [x, c], name)


def _relaxed(b, layer, name, x, shape):
    n_in, n_out, k, cin = layer.n_in, layer.n_out, layer.k, layer.in_channels
    x3 = b.node("Reshape", [x, b.ints(f"{name}.shape_in", [0, cin, n_in])], f"{name}_flat")
    if layer.discrete:
        idx = layer.receptive_index()
        idx = np.where(idx < 0, n_in, idx)  # -1 (zero padding) reads the appended zero column
        padded = b.node("Pad", [x3, b.ints(f"{name}.pads", [0, 0, 0, 0, 0, 1])], f"{name}_zpad")
        p = b.node("Gather", [padded, b.ints(f"{name}.index", idx.reshape(-1))], f"{name}_gather", axis=2)
    else:
        Lc = layer.soft_L().astype(np.float32).reshape(n_in, n_out * k)
        p = b.node("MatMul", [x3, b.const(f"{name}.L", Lc)], f"{name}_xl")
    # P (N, C_in, n_out, k) -> (N, n_out, C_in*k) @ W^T (C_in*k, C_out) -> (N, C_out, n_out)
    p = b.node("Reshape", [p, b.ints(f"{name}.shape_p", [0, cin, n_out, k])], f"{name}_p4")
    p = b.node("Transpose", [p], f"{name}_pt", perm=[0, 2, 1, 3])
    p = b.node("Reshape", [p, b.ints(f"{name}.shape_m", [0, n_out, cin * k])], f"{name}_pm")
    wt = _w(layer, "weight").reshape(layer.out_channels, cin * k).T
    y = b.node("MatMul", [p, b.const(f"{name}.weight_t", wt)], f"{name}_mix")
    if layer.bias:
        y = b.node("Add", [y, b.const(f"{name}.bias", _w(layer, "bias"))], f"{name}_bias")
    return b.node("Transpose", [y], name, perm=[0, 2, 1])


def _simple(op, **attrs_of):
    def f(b, layer, name, x, shape):
        return b.node(op, [x], name, **{k: g(layer, shape) for k, g in attrs_of.items()})
    return f


def _axis(layer, shape):
    return layer.axis % len(shape)


EXPORTABLE_LAYERS = {
    L.Linear: _linear,
    L.Conv2d: _conv,
    L.ConvTranspose2d: _conv_transpose,
    L.MaxPool2d: _pool,
    L.AvgPool2d: _pool,
    L.AdaptiveAvgPool2d: _adaptive,
    L.AdaptiveMaxPool2d: _adaptive,
    L.GlobalAvgPool2d: _adaptive,
    L.GlobalMaxPool2d: _adaptive,
    L.BatchNorm1d: _batchnorm,
    L.BatchNorm2d: _batchnorm,
    L.ReLU: _simple("Relu"),
    L.LeakyReLU: _simple("LeakyRelu", alpha=lambda l, s: l.negative_slope),
    L.Sigmoid: _simple("Sigmoid"),
    L.Tanh: _simple("Tanh"),
    L.Softmax: _simple("Softmax", axis=_axis),
    L.LogSoftmax: _simple("LogSoftmax", axis=_axis),
    L.GELU: _gelu,
    L.Erf: _simple("Erf"),
    L.Hardtanh: _clip,
    L.ReLU6: _clip,
    L.Identity: _simple("Identity"),
    L.Dropout: None,  # inference: the identity, no node
    L.Flatten: _flatten,
    L.Reshape: lambda b, l, n, x, s: b.node("Reshape", [x, b.ints(f"{n}.shape", [0] + list(l.shape))], n),
    L.Transpose: lambda b, l, n, x, s: b.node("Transpose", [x], n, perm=list(l.dims)),
    L.Upsample: _upsample,
    L.PixelShuffle: lambda b, l, n, x, s: b.node("DepthToSpace", [x], n, blocksize=l.upscale_factor, mode="CRD"),
    L.PixelUnshuffle: _pixel_unshuffle,
    L.Pad2d: _pad,
    L.ConstantArith: _constant_arith,
    L.RelaxedConv: _relaxed,
}
_MULTI = {
    L.Concat: lambda b, l, n, xs, shapes: b.node("Concat", xs, n, axis=l.axis % len(shapes[0])),
    L.Add: lambda b, l, n, xs, shapes: b.node("Sum" if len(xs) > 2 else ("Add" if len(xs) == 2 else "Identity"),
                                              xs, n),
    L.Elementwise: lambda b, l, n, xs, shapes: b.node(_ARITH_OPS[l.op], xs, n),
}


def _emit(b, layer, name, x, sample):
    """Emits ``layer`` reading ONNX value(s) ``x`` whose batch-1 sample(s) are ``sample``; returns
    (output value name(s), output sample(s))."""
    if isinstance(layer, L.Sequential):
        for child_name, child in layer._children():
            x, sample = _emit(b, child, f"{name}.{child_name}" if name else child_name, x, sample)
        return x, sample
    if isinstance(layer, L.Graph):
        vals = dict(zip(layer.input_names, x if isinstance(x, list) else [x]))
        smp = dict(zip(layer.input_names, sample if isinstance(sample, list) else [sample]))
        for node in layer._plan():
            nd = layer._nodes[node]
            ins = [vals[i] for i in nd.inputs]
            ss = [smp[i] for i in nd.inputs]
            one = not nd.layer.multi_input
            vals[node], smp[node] = _emit(b, nd.layer, f"{name}.{node}" if name else node,
                                          ins[0] if one else ins, ss[0] if one else ss)
        outs = layer.output_names
        if len(outs) == 1:
            return vals[outs[0]], smp[outs[0]]
        return [vals[o] for o in outs], [smp[o] for o in outs]
    cls = type(layer)
    try:
        y = layer.forward(sample, training=False)
    except (ValueError, TypeError) as e:
        raise ValueError(f"export: layer {name!r} ({cls.__name__}) rejects its input, shape (N, "
                         f"{', '.join(str(d) for d in np.shape(sample)[1:])}) from input_shape: {e}") from None
    layer.clear_cache()
    if layer.multi_input:
        fn = _MULTI.get(cls)
        if fn is None:
            raise ValueError(f"export: layer {name!r} ({cls.__name__}) has no ONNX form; exportable: "
                             f"{', '.join(sorted(c.__name__ for c in list(EXPORTABLE_LAYERS) + list(_MULTI)))}")
        return fn(b, layer, name, x, [np.shape(s) for s in sample]), y
    if cls not in EXPORTABLE_LAYERS:
        raise ValueError(f"export: layer {name!r} ({cls.__name__}) has no ONNX form; exportable: "
                         f"{', '.join(sorted(c.__name__ for c in list(EXPORTABLE_LAYERS) + list(_MULTI)))}")
    fn = EXPORTABLE_LAYERS[cls]
    if fn is None:
        return x, y
    try:
        return fn(b, layer, name, x, np.shape(sample)), y
    except ValueError as e:
        raise ValueError(f"export: layer {name!r} ({cls.__name__}): {e}") from None


def _shapes(input_shape):
    multi = isinstance(input_shape, list)
    specs = input_shape if multi else [input_shape]
    try:
        out = [tuple(int(v) for v in s) for s in specs]
    except (TypeError, ValueError):
        raise TypeError(f"input_shape: expected a tuple of ints without the batch, e.g. (1, 28, 28), or a list of "
                        f"them (one per Graph input), got {input_shape!r}") from None
    if any(not s or min(s) < 1 for s in out):
        raise ValueError(f"input_shape: expected positive sizes without the batch, e.g. (1, 28, 28), got "
                         f"{input_shape!r}")
    return out, multi


def export(model, path, input_shape, *, opset=DEFAULT_OPSET, metadata=None):
    """Writes ``model`` (a Layer: Sequential, Graph or a single layer) to ``path`` as ONNX.

    input_shape: one sample's shape without the batch, e.g. (1, 28, 28); a list of them for a
    Graph with several inputs. The batch dimension is dynamic ("N"). opset: 13 up to the
    installed onnx's newest (default 17; 20+ writes GELU as one Gelu op). metadata: a dict of
    strings stored in the file's metadata_props (read back with :func:`pyconvnet.onnx.metadata`);
    the model's config is always stored under "pyconvnet.config". Returns ``path``.
    Parameters are written as float32. Raises ValueError naming the first layer without an ONNX form."""
    import onnx

    if not isinstance(model, L.Layer):
        raise TypeError(f"model: expected a pyconvnet Layer (Sequential, Graph, ...), got {type(model).__name__}")
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"opset: expected an int, got {opset!r}")
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= int(opset) <= newest:
        raise ValueError(f"opset: expected {MIN_OPSET}..{newest} (the installed onnx's newest), got {opset}")
    if metadata is not None and (not isinstance(metadata, dict) or
                                 not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        raise TypeError("metadata: expected a dict of str -> str")
    shapes, multi = _shapes(input_shape)
    if isinstance(model, L.Graph):
        names = list(model.input_names)
        if len(names) != len(shapes):
            raise ValueError(f"input_shape: the Graph takes {len(names)} inputs {names}, got {len(shapes)} shape(s)")
    else:
        if len(shapes) != 1:
            raise ValueError(f"input_shape: {type(model).__name__} takes one input, got {len(shapes)} shapes")
        names = ["input"]
    b = _Builder(int(opset))
    b.used.update(names)
    samples = [np.zeros((1,) + s, np.float64 if getattr(model, "dtype", None) == np.float64 else np.float32)
               for s in shapes]
    dt = next((p.dtype for p in model.params.values()), np.dtype(np.float32))
    samples = [s.astype(dt) for s in samples]
    try:
        out, y = _emit(b, model, "" if isinstance(model, (L.Sequential, L.Graph)) else "layer",
                       names if len(names) > 1 else names[0], samples if len(samples) > 1 else samples[0])
    finally:
        model.clear_cache()
    outs, ys = (out, y) if isinstance(out, list) else ([out], [y])
    out_names = list(model.output_names) if isinstance(model, L.Graph) else ["output"]
    final = []
    for o, want in zip(outs, out_names):
        if o != want or o in names or o in final:
            want = want if want not in b.used or want == o else b.name(want)
            b.nodes.append(b.h.make_node("Identity", [o], [want], name=b.name(f"{want}/Identity")))
        final.append(want)

    def vinfo(name, shape):
        return b.h.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["N"] + list(shape[1:]))

    graph = b.h.make_graph(b.nodes, "pyconvnet", [vinfo(n, s.shape) for n, s in zip(names, samples)],
                           [vinfo(n, np.shape(v)) for n, v in zip(final, ys)], b.inits)
    ops = [b.h.make_opsetid("", int(opset))]
    m = b.h.make_model(graph, opset_imports=ops, producer_name="pyconvnet",
                       ir_version=b.h.find_min_ir_version_for(ops, True))
    props = {"pyconvnet.config": json.dumps(model.config())}
    props.update(metadata or {})
    b.h.set_model_props(m, props)
    onnx.checker.check_model(m, full_check=True)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".onnx", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(m.SerializeToString())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
