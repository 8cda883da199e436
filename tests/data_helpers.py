"""Small synthetic data-set files for tests/test_data.py."""
from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from pyconvnet.data import write_cifar_bin, write_idx

IDX_NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_NAMES = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",)


def sha256_of_file(path: Path) -> str:
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return hashlib.sha256(data).hexdigest()


def make_idx_set(folder: Path, n_train: int = 12, n_test: int = 5, tag: int = 0, gz: bool = True,
                 seed: int = 0) -> Dict[str, np.ndarray]:
    """Write a tiny MNIST-format set into ``folder``.  Every label equals ``tag``
    (so a test can tell which folder a load came from).  Returns the arrays."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": np.full(n_train, tag, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": np.full(n_test, tag, dtype=np.uint8),
    }
    for name, a in arrays.items():
        write_idx(folder / (name + (".gz" if gz else "")), a)
    return arrays


def make_cifar_set(folder: Path, n: int = 4, gz: bool = False, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """Write six tiny CIFAR-10 binary batches of ``n`` records; returns all
    (images, labels) concatenated in file order (5 train batches then test)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for name in CIFAR_NAMES:
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        y = rng.integers(0, 10, n)
        write_cifar_bin(folder / (name + (".gz" if gz else "")), x, y)
        xs.append(x)
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def digests_of(folder: Path, names) -> Dict[str, str]:
    folder = Path(folder)
    out = {}
    for n in names:
        p = folder / n if (folder / n).exists() else folder / (n + ".gz")
        out[n] = sha256_of_file(p)
    return out


def files_under(folder: Path):
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def make_mnist_like(root: Path, n_train: int = 300, n_test: int = 120, seed: int = 0) -> Path:
    """MNIST-format files (not the canonical ones: load with verify=False) in ``root/mnist``:
    random labels 0..9 and a class-dependent digit-like blob (a filled rectangle whose height and
    width depend on the label) centred in a 20x20 box, plus noise, so a network can learn a little
    in a few steps. Returns ``root``."""
    rng = np.random.default_rng(seed)
    d = Path(root) / "mnist"
    d.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 40, (n, 28, 28)).astype(np.uint8)
        for i, c in enumerate(y):
            h, w = 6 + int(c), 16 - int(c)
            x[i, 14 - h // 2:14 - h // 2 + h, 14 - w // 2:14 - w // 2 + w] = 255
        write_idx(d / f"{prefix}-images-idx3-ubyte", x)
        write_idx(d / f"{prefix}-labels-idx1-ubyte", y)
    return Path(root)
