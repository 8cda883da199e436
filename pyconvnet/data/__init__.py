"""pyconvnet.data: data sets, an image-folder loader and batch augmentations.

Pure Python/NumPy (Pillow only for :class:`ImageFolder`); never unpickles.

Data sets (images uint8 ``(N, C, H, W)``, labels int64)::

    from pyconvnet.data import mnist, fashion_mnist, cifar10
    ds = mnist()                      # ds.train_images (60000, 1, 28, 28), ds.classes
    xtr, ytr, xte, yte = cifar10()    # unpacks like a 4-tuple

Files are looked for under ``root=``, then ``$PYCONVNET_DATA``, then the cache
(``$XDG_CACHE_HOME/pyconvnet`` or ``~/.cache/pyconvnet``), then system folders
(``/usr/share/datasets``), in a per-data-set sub-folder (``mnist/``,
``fashion-mnist/``, ``cifar-10-batches-bin/``) or directly in the root, raw or
``.gz``; failing that they are downloaded into the cache and verified.
"""
from ._io import parse_cifar_bin, parse_idx, read_cifar_bin, read_idx, write_cifar_bin, write_idx
from ._resolve import ENV_VAR, SHA256, ChecksumError, DatasetNotFoundError, cache_dir, search_roots
from .augment import (
    Compose,
    Normalize,
    downsample,
    PixelPermutation,
    RandomCrop,
    RandomHFlip,
    RandomTranslate,
    ToFloat32,
    mean_std,
    normalize,
    alternating_flip,
    random_crop,
    random_hflip,
    random_translate,
    shift_grid,
    to_float,
    to_float32,
    to_uint8,
    translate,
)
from .datasets import (
    CIFAR10_CLASSES,
    FASHION_MNIST_CLASSES,
    MNIST_CLASSES,
    Dataset,
    cifar10,
    fashion_mnist,
    mnist,
)
from .folder import ImageFolder

__all__ = [
    "mnist", "fashion_mnist", "cifar10", "Dataset",
    "MNIST_CLASSES", "FASHION_MNIST_CLASSES", "CIFAR10_CLASSES",
    "read_idx", "write_idx", "parse_idx", "read_cifar_bin", "write_cifar_bin", "parse_cifar_bin",
    "DatasetNotFoundError", "ChecksumError", "cache_dir", "search_roots", "ENV_VAR", "SHA256",
    "ImageFolder",
    "to_float", "to_float32", "to_uint8", "normalize", "mean_std", "downsample",
    "random_translate", "translate", "shift_grid", "random_crop", "random_hflip", "alternating_flip",
    "PixelPermutation",
    "Compose", "RandomTranslate", "RandomCrop", "RandomHFlip", "Normalize", "ToFloat32",
]
