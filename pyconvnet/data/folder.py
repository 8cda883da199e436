"""Stream batches from a folder of images laid out one sub-folder per class.

::

    root/cat/001.png
    root/cat/002.jpg
    root/dog/a.png

Class names are the sorted sub-folder names and map to indices 0, 1, ...
Images are decoded and resized with Pillow (imported lazily, only when an
``ImageFolder`` is created).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ._io import PathLike

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp")


def _require_pil():
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "pyconvnet.data.ImageFolder needs Pillow to decode and resize images, but it is not "
            "installed. Install it with `pip install pillow`."
        ) from exc
    return Image


class ImageFolder:
    """Batches of ``(images float32 (N, C, H, W) in [0, 1], labels int64 (N,))``.

    Parameters
    ----------
    root : folder with one sub-folder per class (hidden entries are ignored).
    size : ``(H, W)`` every image is resized to (bilinear), or an int for square.
    grayscale : convert to 1 channel ("L") instead of 3 ("RGB").
    batch_size, shuffle, seed : shuffling draws a new order each epoch from a
        generator seeded once with ``seed``, so a run is reproducible while
        every epoch differs.
    drop_last : drop a final partial batch.
    transform : optional callable ``t(batch, rng) -> batch`` (see
        :mod:`pyconvnet.data.augment`) applied to each float batch.
    extensions : file suffixes (case-insensitive) treated as images.

    ``len()`` is the number of batches per epoch; ``num_samples`` the number
    of images; ``classes`` the class names; ``samples`` the ``(path, label)``
    list.  ``load_all()`` returns every image as one array pair.
    """

    def __init__(
        self,
        root: PathLike,
        size: Union[int, Tuple[int, int]] = (32, 32),
        grayscale: bool = False,
        batch_size: int = 32,
        shuffle: bool = False,
        seed: Optional[int] = None,
        *,
        drop_last: bool = False,
        transform: Optional[Callable[[np.ndarray, np.random.Generator], np.ndarray]] = None,
        extensions: Sequence[str] = IMAGE_EXTENSIONS,
    ):
        self._Image = _require_pil()
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"ImageFolder: {self.root} is not a directory")
        if isinstance(size, int):
            size = (size, size)
        self.size = (int(size[0]), int(size[1]))
        if min(self.size) < 1:
            raise ValueError(f"ImageFolder: size must be positive, got {size}")
        if batch_size < 1:
            raise ValueError(f"ImageFolder: batch_size must be >= 1, got {batch_size}")
        self.grayscale = bool(grayscale)
        self.channels = 1 if grayscale else 3
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.drop_last = bool(drop_last)
        self.transform = transform
        self._rng = np.random.default_rng(seed)
        exts = tuple(e.lower() for e in extensions)

        self.classes: List[str] = sorted(
            e.name for e in os.scandir(self.root) if e.is_dir() and not e.name.startswith(".")
        )
        if not self.classes:
            raise FileNotFoundError(f"ImageFolder: {self.root} has no class sub-folders")
        self.class_to_idx: Dict[str, int] = {c: i for i, c in enumerate(self.classes)}
        self.samples: List[Tuple[Path, int]] = []
        for c in self.classes:
            for dirpath, dirnames, filenames in os.walk(self.root / c, followlinks=True):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for f in sorted(filenames):
                    if not f.startswith(".") and f.lower().endswith(exts):
                        self.samples.append((Path(dirpath) / f, self.class_to_idx[c]))
        if not self.samples:
            raise FileNotFoundError(
                f"ImageFolder: no images ({', '.join(exts)}) under the class folders of {self.root}"
            )
        self.labels = np.array([s[1] for s in self.samples], dtype=np.int64)

    @property
    def num_samples(self) -> int:
        return len(self.samples)

    def __len__(self) -> int:
        n = len(self.samples)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def load_image(self, path: PathLike) -> np.ndarray:
        """One image as float32 ``(C, H, W)`` in [0, 1]."""
        Image = self._Image
        with Image.open(path) as im:
            im = im.convert("L" if self.grayscale else "RGB")
            h, w = self.size
            if im.size != (w, h):
                im = im.resize((w, h), resample=getattr(Image, "Resampling", Image).BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
        if a.ndim == 2:
            a = a[None]
        else:
            a = a.transpose(2, 0, 1)
        out = a.astype(np.float32)
        out *= np.float32(1.0 / 255.0)
        return out

    def _load_batch(self, idx: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        h, w = self.size
        x = np.empty((len(idx), self.channels, h, w), dtype=np.float32)
        for j, i in enumerate(idx):
            path = self.samples[int(i)][0]
            try:
                x[j] = self.load_image(path)
            except (OSError, ValueError) as exc:
                raise ValueError(f"ImageFolder: cannot read image {path}: {exc}") from exc
        return x, self.labels[idx]

    def __iter__(self) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        n = len(self.samples)
        order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size]
            x, y = self._load_batch(idx)
            if self.transform is not None:
                x = self.transform(x, self._rng)
            yield x, y

    def load_all(self) -> Tuple[np.ndarray, np.ndarray]:
        """Every image (in folder order, untransformed) as ``(float32 (N,C,H,W), int64 (N,))``."""
        return self._load_batch(np.arange(len(self.samples)))

    def __repr__(self) -> str:
        return (f"ImageFolder({str(self.root)!r}, samples={len(self.samples)}, classes={len(self.classes)}, "
                f"size={self.size}, channels={self.channels}, batch_size={self.batch_size})")
