"""MNIST, Fashion-MNIST and CIFAR-10 loaders (pure NumPy, no pickle).

Each loader returns a :class:`Dataset` with ``train_images``, ``train_labels``,
``test_images``, ``test_labels`` (images uint8 ``(N, C, H, W)``, labels int64)
and ``classes``.  It unpacks like a 4-tuple::

    xtr, ytr, xte, yte = mnist()

See :mod:`pyconvnet.data._resolve` for where the files are looked for.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator, Optional, Tuple

import numpy as np

from ._io import PathLike, parse_cifar_bin, parse_idx
from ._resolve import SPECS, Spec, load_bytes, locate

MNIST_CLASSES: Tuple[str, ...] = tuple(str(i) for i in range(10))
FASHION_MNIST_CLASSES: Tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CIFAR10_CLASSES: Tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)

IDX_IMAGES_MAGIC = 0x00000803  # uint8, 3 dims
IDX_LABELS_MAGIC = 0x00000801  # uint8, 1 dim


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split.  Iterating yields the four arrays, so it unpacks as
    ``train_images, train_labels, test_images, test_labels``."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    classes: Tuple[str, ...]
    name: str = ""
    files: Dict[str, Path] = field(default_factory=dict, repr=False)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.train_images, self.train_labels, self.test_images, self.test_labels))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        src = Path(next(iter(self.files.values()))).parent if self.files else None
        return (f"Dataset({self.name!r}, train={self.train_images.shape}, test={self.test_images.shape}, "
                f"classes={len(self.classes)}, from={str(src)!r})")


def _check_labels(labels: np.ndarray, n_classes: int, where: str) -> np.ndarray:
    labels = labels.astype(np.int64)
    if labels.size and int(labels.max()) >= n_classes:
        raise ValueError(f"{where}: label {int(labels.max())} out of range 0..{n_classes - 1}")
    return labels


def _load_idx_split(spec: Spec, files: Dict[str, Path], prefix: str, verify: bool) -> Tuple[np.ndarray, np.ndarray]:
    iname, lname = f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte"
    ipath, lpath = files[iname], files[lname]
    images = parse_idx(load_bytes(spec, iname, ipath, verify), str(ipath), magic=IDX_IMAGES_MAGIC)
    labels = parse_idx(load_bytes(spec, lname, lpath, verify), str(lpath), magic=IDX_LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise ValueError(f"{ipath}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28")
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{lpath}: {labels.shape[0]} labels but {ipath} has {images.shape[0]} images")
    return images.reshape(images.shape[0], 1, 28, 28), _check_labels(labels, 10, str(lpath))


def _idx_dataset(key: str, classes: Tuple[str, ...], root: Optional[PathLike], download: bool,
                 verify: bool) -> Dataset:
    spec = SPECS[key]
    files = locate(spec, root, download)
    xtr, ytr = _load_idx_split(spec, files, "train", verify)
    xte, yte = _load_idx_split(spec, files, "t10k", verify)
    return Dataset(xtr, ytr, xte, yte, classes, spec.title, files)


def mnist(root: Optional[PathLike] = None, download: bool = True, *, verify: bool = True) -> Dataset:
    """MNIST: 60000 train + 10000 test images, uint8 ``(N, 1, 28, 28)``, labels 0..9.

    Files (raw or ``.gz``): ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` in ``root/mnist/`` or
    ``root/``, searched under ``root``, ``$PYCONVNET_DATA``, the cache, then
    system folders; downloaded into the cache if absent and ``download``.
    ``verify`` checks the SHA-256 of each file's decompressed content.
    """
    return _idx_dataset("mnist", MNIST_CLASSES, root, download, verify)


def fashion_mnist(root: Optional[PathLike] = None, download: bool = True, *, verify: bool = True) -> Dataset:
    """Fashion-MNIST: same layout and file names as :func:`mnist`, in a
    ``fashion-mnist/`` folder (Debian's ``dataset-fashion-mnist`` package puts
    it in ``/usr/share/datasets/fashion-mnist/``, which is searched)."""
    return _idx_dataset("fashion-mnist", FASHION_MNIST_CLASSES, root, download, verify)


def cifar10(root: Optional[PathLike] = None, download: bool = True, *, verify: bool = True) -> Dataset:
    """CIFAR-10 from its binary distribution: 50000 train + 10000 test images,
    uint8 ``(N, 3, 32, 32)`` (RGB), labels 0..9.

    Files (raw or ``.gz``): ``data_batch_1.bin`` .. ``data_batch_5.bin`` and
    ``test_batch.bin`` in ``root/cifar-10-batches-bin/`` or ``root/``.  A
    download fetches ``cifar-10-binary.tar.gz`` and extracts only those members.
    """
    spec = SPECS["cifar10"]
    files = locate(spec, root, download)
    parts = []
    for name in spec.files:
        data = load_bytes(spec, name, files[name], verify)
        parts.append(parse_cifar_bin(data, str(files[name])))
    xtr = np.concatenate([p[0] for p in parts[:5]])
    ytr = np.concatenate([p[1] for p in parts[:5]])
    xte, yte = parts[5]
    return Dataset(xtr, ytr, xte, yte, CIFAR10_CLASSES, spec.title, files)
