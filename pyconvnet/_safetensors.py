"""The safetensors file format, read and written without the ``safetensors`` package.

Layout (the format's specification): 8 bytes little-endian unsigned header length H; H
bytes of UTF-8 JSON, an object mapping each tensor name to {"dtype", "shape",
"data_offsets": [begin, end]} plus an optional "__metadata__" object of str -> str; then
the data buffer, every tensor's raw little-endian bytes in C order at
[8 + H + begin, 8 + H + end). No pickle, no code: a file is only numbers and JSON.

Reading is strict, because a header can lie: the header length must fit in the file
(and stay under 100 MiB), the JSON must be an object without duplicate names, every
dtype known, every shape a list of non-negative ints whose byte size equals its offsets'
span, and the tensors must tile the data buffer exactly (contiguous, in order, no gap, no
overlap, nothing left over). Any violation is a ValueError naming the file and the problem.

This module is a leaf: it imports nothing else from pyconvnet.
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np

__all__ = ["read_safetensors", "write_safetensors", "DTYPES"]

# safetensors dtype names -> NumPy (little-endian); BF16 is read as float32 by shifting its bits
DTYPES = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES = {np.dtype("<f8"): "F64", np.dtype("<f4"): "F32", np.dtype("<f2"): "F16", np.dtype("<i8"): "I64",
          np.dtype("<i4"): "I32", np.dtype("<i2"): "I16", np.dtype("i1"): "I8", np.dtype("<u8"): "U64",
          np.dtype("<u4"): "U32", np.dtype("<u2"): "U16", np.dtype("u1"): "U8", np.dtype("?"): "BOOL"}
MAX_HEADER = 100 * 2**20


def write_safetensors(path, tensors: dict, metadata: dict | None = None):
    """Writes ``tensors`` (name -> array) and ``metadata`` (str -> str) to ``path`` atomically."""
    header, blobs, offset = {}, [], 0
    if metadata:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("metadata: expected a dict of str -> str")
        header["__metadata__"] = dict(metadata)
    for name in sorted(tensors):
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"tensors: invalid tensor name {name!r}")
        a = np.asarray(tensors[name])
        dt = a.dtype.newbyteorder("<") if a.dtype.byteorder == ">" else a.dtype
        if dt not in _NAMES:
            raise TypeError(f"tensors[{name!r}]: dtype {a.dtype} has no safetensors equivalent")
        data = np.ascontiguousarray(a, dt).tobytes()
        header[name] = {"dtype": _NAMES[dt], "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data buffer starts 8-byte aligned (the format allows trailing spaces)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(len(text).to_bytes(8, "little"))
            f.write(text)
            for b in blobs:
                f.write(b)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def read_safetensors(path):
    """(tensors: name -> ndarray, metadata: dict) of the safetensors file ``path``; every check of the
    module docstring, each failure a ValueError naming the file."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()

    def bad(msg):
        return ValueError(f"{path}: not a valid safetensors file: {msg}")

    if len(raw) < 8:
        raise bad(f"{len(raw)} bytes, shorter than the 8-byte header length")
    n = int.from_bytes(raw[:8], "little")
    if n < 2 or n > MAX_HEADER:
        raise bad(f"header length {n} is not in [2, {MAX_HEADER}]")
    if 8 + n > len(raw):
        raise bad(f"header length {n} runs past the end of the {len(raw)}-byte file (truncated?)")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"), object_pairs_hook=_no_duplicates)
    except ValueError as e:  # UnicodeDecodeError, JSONDecodeError, duplicates
        raise bad(f"the header is not a JSON object ({e})") from None
    if not isinstance(header, dict):
        raise bad(f"the header is a JSON {type(header).__name__}, not an object")
    meta = header.pop("__metadata__", {})
    if meta is None:
        meta = {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise bad("__metadata__ must be an object of string values")
    data = memoryview(raw)[8 + n:]
    spans = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
            raise bad(f"tensor {name!r}: expected exactly the keys dtype, shape, data_offsets, got {info!r:.100}")
        dt = DTYPES.get(info["dtype"]) if isinstance(info["dtype"], str) else None
        if dt is None:
            raise bad(f"tensor {name!r}: unknown dtype {info['dtype']!r} (known: {', '.join(DTYPES)})")
        shape, offs = info["shape"], info["data_offsets"]
        if not isinstance(shape, list) or not all(type(v) is int and v >= 0 for v in shape):
            raise bad(f"tensor {name!r}: shape {shape!r} is not a list of non-negative ints")
        if not (isinstance(offs, list) and len(offs) == 2 and all(type(v) is int and v >= 0 for v in offs)):
            raise bad(f"tensor {name!r}: data_offsets {offs!r} is not a pair of non-negative ints")
        begin, end = offs
        if end < begin or end > len(data):
            raise bad(f"tensor {name!r}: data_offsets [{begin}, {end}] lie outside the {len(data)}-byte data buffer")
        count = int(np.prod(shape, dtype=object)) if shape else 1
        if count * dt.itemsize != end - begin:
            raise bad(f"tensor {name!r}: {info['dtype']} of shape {shape} takes {count * dt.itemsize} bytes, but its "
                      f"data_offsets span {end - begin}")
        spans.append((begin, end, name, dt, shape, info["dtype"]))
    spans.sort()
    pos = 0
    for begin, end, name, *_ in spans:
        if begin != pos:
            what = "overlaps the previous tensor" if begin < pos else f"leaves a gap of {begin - pos} bytes before it"
            raise bad(f"tensor {name!r}: data_offsets [{begin}, {end}] {what}")
        pos = end
    if pos != len(data):
        raise bad(f"{len(data) - pos} bytes after the last tensor are not described by the header")
    tensors = {}
    for begin, end, name, dt, shape, dname in spans:
        a = np.frombuffer(data[begin:end], dt).reshape(shape)
        if dname == "BF16":  # the upper half of a float32
            a = (a.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = a.astype(a.dtype.newbyteorder("="), copy=True)
    return tensors, meta
