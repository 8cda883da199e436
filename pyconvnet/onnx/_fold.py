"""Constant folding for the shape arithmetic exporters write around the real ops.

torch.onnx's TorchScript exporter computes a Pad's pads with Concat / Reshape / Slice /
Transpose / Cast of constants, and ``x.view(x.size(0), -1)`` as Shape -> Gather ->
Unsqueeze -> Concat; the dynamo exporter writes constants directly. Every node whose
inputs are all constants is evaluated here with NumPy, once, at import.

The dynamic batch dimension: ``Shape`` of a computed tensor gives its static sizes with
the batch entry replaced by ``BATCH``, a sentinel no real size equals. Gather / Concat /
Slice carry it through unchanged; a consumer (Reshape, Resize, Expand) reads an entry
equal to ``BATCH`` as "the batch size" and refuses any other value derived from it
(``BATCH * 3``, ``BATCH // 2``): that is a dynamic shape we cannot resolve.
"""
from __future__ import annotations

import numpy as np

__all__ = ["BATCH", "FOLDABLE", "fold", "is_batch_derived"]

BATCH = 1_000_003  # a prime: products and quotients of it are recognisable


def is_batch_derived(v) -> bool:
    """Whether an integer entry came from arithmetic on the batch sentinel (other than the sentinel itself)."""
    v = int(v)
    return v != BATCH and (abs(v) >= BATCH // 64)


def _ints(a):
    return [int(v) for v in np.asarray(a).reshape(-1)]


def _axes(node, inputs, index, default=None):
    """An axes list from input ``index`` (opset 13+/18+) or the attribute ``axes`` (older)."""
    if len(inputs) > index and inputs[index] is not None:
        return _ints(inputs[index])
    return node.attrs.get("axes", default)


def _slice(node, ins):
    data = ins[0]
    starts, ends = _ints(ins[1]), _ints(ins[2])
    axes = _ints(ins[3]) if len(ins) > 3 and ins[3] is not None else list(range(len(starts)))
    steps = _ints(ins[4]) if len(ins) > 4 and ins[4] is not None else [1] * len(starts)
    idx = [slice(None)] * data.ndim
    for s, e, a, st in zip(starts, ends, axes, steps):
        idx[a % data.ndim] = slice(s, e, st)  # NumPy clamps out-of-range bounds as ONNX does
    return data[tuple(idx)]


def _unsqueeze(node, ins):
    x = ins[0]
    axes = sorted(a % (x.ndim + len(_axes(node, ins, 1))) for a in _axes(node, ins, 1))
    for a in axes:
        x = np.expand_dims(x, a)
    return x


def _squeeze(node, ins):
    x = ins[0]
    axes = _axes(node, ins, 1)
    return np.squeeze(x) if axes is None else np.squeeze(x, axis=tuple(a % x.ndim for a in axes))


def _reshape(node, ins):
    x, shape = ins[0], _ints(ins[1])
    if not node.attrs.get("allowzero", 0):
        shape = [x.shape[i] if v == 0 else v for i, v in enumerate(shape)]
    return x.reshape(shape)


def _cast(node, ins):
    import onnx

    return ins[0].astype(onnx.helper.tensor_dtype_to_np_dtype(node.attrs["to"]))


def _constant_of_shape(node, ins):
    import onnx

    value = node.attrs.get("value")
    v = onnx.numpy_helper.to_array(value) if value is not None else np.zeros(1, np.float32)
    return np.full(_ints(ins[0]), v.reshape(-1)[0], v.dtype)


def _gather(node, ins):
    return np.take(ins[0], ins[1].astype(np.int64), axis=node.attrs.get("axis", 0))


def _range(node, ins):
    return np.arange(ins[0].item(), ins[1].item(), ins[2].item()).astype(ins[0].dtype)


def _div(node, ins):
    a, b = ins
    if a.dtype.kind in "iu" and b.dtype.kind in "iu":
        return np.trunc(a / b).astype(np.result_type(a, b))  # ONNX integer Div truncates
    return np.divide(a, b)


FOLDABLE = {
    "Identity": lambda n, i: i[0],
    "Shape": None,  # handled by the loader (it needs the static shape of a computed tensor)
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": lambda n, i: np.concatenate([np.atleast_1d(v) for v in i], axis=n.attrs.get("axis", 0)),
    "Slice": _slice,
    "Cast": _cast,
    "Reshape": _reshape,
    "Transpose": lambda n, i: np.transpose(i[0], n.attrs.get("perm")),
    "ConstantOfShape": _constant_of_shape,
    "Range": _range,
    "Add": lambda n, i: np.add(i[0], i[1]),
    "Sub": lambda n, i: np.subtract(i[0], i[1]),
    "Mul": lambda n, i: np.multiply(i[0], i[1]),
    "Div": _div,
    "Pow": lambda n, i: np.power(i[0], i[1]),
    "Neg": lambda n, i: np.negative(i[0]),
    "Sqrt": lambda n, i: np.sqrt(i[0]),
    "Equal": lambda n, i: np.equal(i[0], i[1]),
    "Where": lambda n, i: np.where(i[0], i[1], i[2]),
    "Expand": lambda n, i: i[0] * np.ones(_ints(i[1]), i[0].dtype),
    "Floor": lambda n, i: np.floor(i[0]),
    "Ceil": lambda n, i: np.ceil(i[0]),
    "Flatten": lambda n, i: i[0].reshape(int(np.prod(i[0].shape[:n.attrs.get("axis", 1)])), -1),
}


def fold(node, inputs):
    """Evaluates ``node`` on constant ``inputs`` (NumPy arrays; None for an omitted optional input)."""
    with np.errstate(all="ignore"):
        return np.asarray(FOLDABLE[node.op](node, inputs))
