"""Low-level readers for the on-disk formats: IDX (MNIST, Fashion-MNIST) and
the CIFAR-10 binary batches.  Pure Python/NumPy; files may be raw or gzip'd.

Every reader loads the whole file, validates it completely and only then
builds arrays, so a bad file raises ``ValueError`` (naming the file and the
problem) and never yields a half-loaded result.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

_GZIP_MAGIC = b"\x1f\x8b"

# IDX type codes -> big-endian NumPy dtypes (http://yann.lecun.com/exdb/mnist/)
_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_DTYPES.items()}

CIFAR_RECORD = 1 + 3 * 32 * 32  # label byte + R, G, B planes of 32x32


def read_bytes(path: PathLike) -> bytes:
    """Return the (decompressed) content of ``path``.

    gzip is detected from the content's magic bytes, not the file name, so a
    raw file and its ``.gz`` form are read identically.  A corrupt or
    truncated gzip stream raises ``ValueError`` naming the file.
    """
    path = Path(path)
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"{path}: corrupt or truncated gzip data ({exc})") from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_idx(data: bytes, name: str = "<bytes>", *, magic: Optional[int] = None) -> np.ndarray:
    """Parse the bytes of an IDX file (already decompressed) into an array.

    Checks the magic number (two zero bytes, a known type code, ndim >= 1;
    or exactly ``magic`` when given, e.g. ``0x00000803`` for uint8 images),
    and that the payload length equals the product of the dimensions times
    the item size *exactly*.  The result is a writeable, native-endian array.
    """
    if len(data) < 4:
        raise ValueError(f"{name}: not an IDX file: only {len(data)} bytes, too short for the 4-byte magic number")
    found = int.from_bytes(data[:4], "big")
    code, ndim = data[2], data[3]
    if data[0] != 0 or data[1] != 0 or code not in _IDX_DTYPES or ndim == 0:
        raise ValueError(
            f"{name}: not an IDX file: bad magic number 0x{found:08X} (expected 0x0000TTNN with type "
            f"code TT in {{{', '.join(f'0x{c:02X}' for c in _IDX_DTYPES)}}} and NN >= 1 dimensions, "
            f"e.g. 0x00000803 for images, 0x00000801 for labels)"
        )
    if magic is not None and found != magic:
        raise ValueError(f"{name}: wrong IDX magic number 0x{found:08X}, expected 0x{magic:08X}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: truncated IDX header: {ndim} dimensions need {header} header bytes, file has {len(data)}")
    dims = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[code]
    expected = dtype.itemsize
    for d in dims:
        expected *= d
    payload = len(data) - header
    if payload != expected:
        what = "truncated" if payload < expected else "oversized (trailing bytes)"
        raise ValueError(
            f"{name}: IDX payload is {payload} bytes but the header's dimensions {dims} "
            f"({dtype.name}) require exactly {expected}: file is {what}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: PathLike, *, magic: Optional[int] = None) -> np.ndarray:
    """Read an IDX file (raw or gzip'd) into a NumPy array.

    Raises ``ValueError`` naming the file if the magic number is wrong (or is
    not ``magic`` when given: ``0x00000803`` uint8 images, ``0x00000801``
    uint8 labels), or the payload is shorter or longer than the header's
    dimensions require.
    """
    return parse_idx(read_bytes(path), str(path), magic=magic)


def write_idx(path: PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file; gzip'd when ``path`` ends in ``.gz``.

    (The inverse of :func:`read_idx`; handy for making test fixtures.)
    """
    array = np.asarray(array)
    code = _IDX_CODES.get(array.dtype.newbyteorder("="))
    if code is None or array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"cannot write dtype {array.dtype} / ndim {array.ndim} as IDX")
    head = bytes([0, 0, code, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    body = np.ascontiguousarray(array, dtype=_IDX_DTYPES[code]).tobytes()
    data = head + body
    path = Path(path)
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    path.write_bytes(data)


def parse_cifar_bin(data: bytes, name: str = "<bytes>", *, num_classes: int = 10) -> Tuple[np.ndarray, np.ndarray]:
    """Parse a CIFAR-10 binary batch: records of 1 label byte + 3072 image bytes
    (R, G, B planes of 32x32, row-major).  Returns ``(images uint8 (N,3,32,32),
    labels int64 (N,))``.  The length must be a whole, non-zero number of
    records and every label must be < ``num_classes``.
    """
    n, rem = divmod(len(data), CIFAR_RECORD)
    if rem or n == 0:
        raise ValueError(
            f"{name}: not a CIFAR-10 binary batch: {len(data)} bytes is not a positive multiple of the "
            f"{CIFAR_RECORD}-byte record (1 label byte + 3*32*32 pixels); file truncated or oversized"
        )
    rec = np.frombuffer(data, dtype=np.uint8).reshape(n, CIFAR_RECORD)
    labels = rec[:, 0].astype(np.int64)
    bad = np.flatnonzero(labels >= num_classes)
    if bad.size:
        raise ValueError(
            f"{name}: label {int(labels[bad[0]])} at record {int(bad[0])} is out of range 0..{num_classes - 1} "
            f"({bad.size} bad labels): not a CIFAR-10 binary batch (CIFAR-100 or corrupt?)"
        )
    images = rec[:, 1:].reshape(n, 3, 32, 32).copy()
    return images, labels


def read_cifar_bin(path: PathLike, *, num_classes: int = 10) -> Tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 binary batch file (raw or gzip'd); see :func:`parse_cifar_bin`."""
    return parse_cifar_bin(read_bytes(path), str(path), num_classes=num_classes)


def write_cifar_bin(path: PathLike, images: np.ndarray, labels: np.ndarray) -> None:
    """Write a CIFAR-10 style binary batch (gzip'd when ``path`` ends in ``.gz``)."""
    images = np.asarray(images, dtype=np.uint8)
    labels = np.asarray(labels)
    if images.ndim != 4 or images.shape[1:] != (3, 32, 32) or labels.shape != images.shape[:1]:
        raise ValueError("expected images (N, 3, 32, 32) and labels (N,)")
    rec = np.empty((images.shape[0], CIFAR_RECORD), dtype=np.uint8)
    rec[:, 0] = labels
    rec[:, 1:] = images.reshape(images.shape[0], -1)
    data = rec.tobytes()
    path = Path(path)
    if path.name.endswith(".gz"):
        data = gzip.compress(data, compresslevel=6, mtime=0)
    path.write_bytes(data)

