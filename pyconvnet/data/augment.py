"""Batch augmentations and preprocessing in NumPy.

All functions take image batches shaped ``(N, C, H, W)`` and return new arrays
(inputs are never modified).  Random ones take an ``rng``: a
``numpy.random.Generator`` (use one per training run and pass it on every
call, so every call, hence every epoch, draws fresh offsets), an int seed, or
``None`` for fresh OS entropy.

Composable form: every transform object below is a callable
``t(batch, rng) -> batch``; :class:`Compose` chains them::

    aug = Compose(RandomCrop(32, padding=4), RandomHFlip(), Normalize(mean, std))
    rng = np.random.default_rng(0)
    for xb, yb in batches:
        xb = aug(to_float32(xb), rng)
"""
from __future__ import annotations

from typing import Callable, Dict, Sequence, Tuple, Union

import numpy as np

RngLike = Union[None, int, np.random.Generator, np.random.SeedSequence]
Transform = Callable[[np.ndarray, np.random.Generator], np.ndarray]
IntPair = Union[int, Tuple[int, int], Sequence[int]]

__all__ = [
    "to_float", "to_float32", "to_uint8", "normalize", "mean_std", "downsample",
    "random_translate", "translate", "shift_grid", "random_crop", "random_hflip", "alternating_flip",
    "PixelPermutation",
    "Compose", "RandomTranslate", "RandomCrop", "RandomHFlip", "Normalize", "ToFloat32",
]


def _as_rng(rng: RngLike) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


def _batch(images: np.ndarray, fn: str) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"{fn}: expected a batch shaped (N, C, H, W), got shape {images.shape}")
    return images


def _pair(v: IntPair, what: str) -> Tuple[int, int]:
    if np.ndim(v) == 0:
        a = b = int(v)  # type: ignore[arg-type]
    else:
        a, b = (int(x) for x in v)  # type: ignore[union-attr]
    if a < 0 or b < 0:
        raise ValueError(f"{what} must be non-negative, got {v!r}")
    return a, b


# --------------------------------------------------------------------------- conversions

def to_float(images, dtype=np.float32) -> np.ndarray:
    """uint8 images -> floats in [0, 1] (divided by 255) of ``dtype``; float input is
    cast to ``dtype`` (returned as is, not copied, when it already has it).

    The default input transform of the training loop. Other dtypes (ints, bools) are a
    TypeError: their scale is unknown."""
    images = np.asarray(images)
    dtype = np.dtype(dtype)
    if images.dtype == np.uint8:
        out = images.astype(dtype)
        out *= dtype.type(1.0 / 255.0)
        return out
    if np.issubdtype(images.dtype, np.floating):
        return images.astype(dtype, copy=False)
    raise TypeError(f"images: expected uint8 or floating images, got dtype {images.dtype}")


def to_float32(images: np.ndarray) -> np.ndarray:
    """uint8 images -> float32 in [0, 1]; float input cast to float32 (:func:`to_float`)."""
    return to_float(images, np.float32)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """float images in [0, 1] -> uint8 (rounded, clipped); the inverse of :func:`to_float32`."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        return images.copy()
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)


def _per_channel(v, c: int, what: str) -> np.ndarray:
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    if a.size == 1:
        a = np.repeat(a, c)
    if a.size != c:
        raise ValueError(f"normalize: {what} has {a.size} values for {c} channels")
    return a


def normalize(images: np.ndarray, mean, std) -> np.ndarray:
    """Per-channel ``(x - mean[c]) / std[c]`` as float32.

    ``mean``/``std`` are scalars or length-C sequences in the same units as
    ``images`` (no rescaling is done: convert with :func:`to_float32` first if
    the statistics are for [0, 1] data).  So ``normalize(x, *mean_std(x))``
    has zero mean and unit std per channel whatever the dtype.
    """
    images = _batch(images, "normalize")
    c = images.shape[1]
    m = _per_channel(mean, c, "mean")
    s = _per_channel(std, c, "std")
    if np.any(s <= 0) or not np.all(np.isfinite(s)):
        raise ValueError(f"normalize: std must be positive and finite, got {s}")
    out = images.astype(np.float32)
    out -= m.astype(np.float32).reshape(1, c, 1, 1)
    out *= (1.0 / s).astype(np.float32).reshape(1, c, 1, 1)
    return out


def mean_std(images: np.ndarray, chunk: int = 1024) -> Tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and (population) std over N, H, W, as float64 arrays of
    shape (C,).  Computed in chunks, so a whole uint8 data set never needs a
    float64 copy in memory."""
    images = _batch(images, "mean_std")
    n, c = images.shape[:2]
    count = 0
    mean = np.zeros(c)
    m2 = np.zeros(c)
    for i in range(0, n, chunk):
        x = images[i:i + chunk].astype(np.float64)
        k = x.shape[0] * x.shape[2] * x.shape[3]
        if k == 0:
            continue
        cm = x.mean(axis=(0, 2, 3))
        cm2 = ((x - cm.reshape(1, c, 1, 1)) ** 2).sum(axis=(0, 2, 3))
        delta = cm - mean
        tot = count + k
        mean = mean + delta * (k / tot)
        m2 = m2 + cm2 + delta ** 2 * (count * k / tot)
        count = tot
    if count == 0:
        raise ValueError("mean_std: empty batch")
    return mean, np.sqrt(m2 / count)


# --------------------------------------------------------------------------- random geometry

def downsample(images: np.ndarray, size: int) -> np.ndarray:
    """Square uint8 or float images (N, C, H, H) -> float32 (N, C, size, size) in [0, 1] by
    means over (H/size)^2 blocks (``size`` must divide H)."""
    images = _batch(images, "downsample")
    n, c, h, w = images.shape
    if h != w or size < 1 or h % size:
        raise ValueError(f"size: must divide the image side {h} (square images), got {size} for shape {images.shape}")
    f = h // size
    x = to_float(images, np.float32)
    if f > 1:
        x = x.reshape(n, c, size, f, size, f).mean(axis=(3, 5), dtype=np.float32)
    return np.ascontiguousarray(x)


def _grouped_copy(keys: np.ndarray, copy_group: Callable[[np.ndarray, int], None]) -> None:
    """Call ``copy_group(idx, key)`` once per distinct key (images sharing an offset)."""
    order = np.argsort(keys, kind="stable")
    uniq, starts = np.unique(keys[order], return_index=True)
    ends = np.append(starts[1:], len(order))
    for key, a, b in zip(uniq, starts, ends):
        copy_group(order[a:b], int(key))


def random_translate(images: np.ndarray, max_shift: IntPair, rng: RngLike = None) -> np.ndarray:
    """Shift each image independently by a random integer offset
    ``(dy, dx)``, each uniform in ``[-max_shift, max_shift]`` (``max_shift`` may
    be a ``(y, x)`` pair), filling uncovered pixels with zeros.  All channels
    of an image move together.  Offsets are drawn from ``rng`` on every call.
    Same dtype and shape as the input."""
    images = _batch(images, "random_translate")
    sy, sx = _pair(max_shift, "max_shift")
    rng = _as_rng(rng)
    n, _, h, w = images.shape
    dy = rng.integers(-sy, sy + 1, size=n)
    dx = rng.integers(-sx, sx + 1, size=n)
    return _translate(images, dy, dx)


def translate(images: np.ndarray, dy, dx) -> np.ndarray:
    """Shift every image by the integer offset ``(dy, dx)`` (scalars: one offset for the whole
    batch; (N,) arrays: one per image), content moving down / right for positive values,
    uncovered pixels filled with zeros (the black MNIST background; nothing wraps around, unlike
    ``np.roll``): ``out[..., y, x] = images[..., y - dy, x - dx]``. Same dtype and shape."""
    images = _batch(images, "translate")
    n = images.shape[0]
    offsets = []
    for name, v in (("dy", dy), ("dx", dx)):
        a = np.asarray(v)
        if a.dtype.kind not in "iu":
            raise TypeError(f"translate: {name} must be integer offsets, got dtype {a.dtype}")
        if a.ndim == 0:
            a = np.full(n, int(a), dtype=np.int64)
        elif a.shape != (n,):
            raise ValueError(f"translate: {name} must be a scalar or shaped ({n},) like the batch, got shape {a.shape}")
        offsets.append(a.astype(np.int64))
    return _translate(images, offsets[0], offsets[1])


def shift_grid(max_y: int, max_x: int, step_y: int = 1, step_x: int = 1) -> np.ndarray:
    """The (K, 2) int64 offsets ``(dy, dx)`` of a symmetric grid: dy in -max_y, -max_y + step_y,
    ..., max_y and likewise dx (``max`` a multiple of ``step``, so (0, 0) is on it), dy-major
    (row k = (dy_i, dx_j) with k = i * len(dx) + j). ``shift_grid(4, 5, 2, 1)`` is 5 x 11 = 55
    offsets."""
    axes = []
    for name, m, s in (("y", max_y, step_y), ("x", max_x, step_x)):
        if int(m) != m or int(s) != s or m < 0 or s < 1:
            raise ValueError(f"shift_grid: max_{name} must be an int >= 0 and step_{name} an int >= 1, "
                             f"got max_{name}={m!r}, step_{name}={s!r}")
        if m % s:
            raise ValueError(f"shift_grid: max_{name}={m} is not a multiple of step_{name}={s} "
                             "(the grid would miss the unshifted image)")
        axes.append(np.arange(-int(m), int(m) + 1, int(s), dtype=np.int64))
    dy, dx = np.meshgrid(axes[0], axes[1], indexing="ij")
    return np.stack([dy.ravel(), dx.ravel()], axis=1)


def _translate(images: np.ndarray, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Deterministic per-image shift with zero fill (``out[y, x] = in[y - dy, x - dx]``)."""
    n, _, h, w = images.shape
    out = np.zeros_like(images)
    nx = 2 * (w + 1) + 1

    def copy(idx: np.ndarray, key: int) -> None:
        y, x = divmod(key, nx)
        y, x = y - h - 1, x - w - 1
        if abs(y) >= h or abs(x) >= w:
            return  # shifted entirely out of frame
        out[idx, :, max(y, 0):h + min(y, 0), max(x, 0):w + min(x, 0)] = \
            images[idx, :, max(-y, 0):h - max(y, 0), max(-x, 0):w - max(x, 0)]

    dy = np.clip(dy, -h, h)
    dx = np.clip(dx, -w, w)
    keys = (dy + h + 1) * nx + (dx + w + 1)
    _grouped_copy(keys, copy)
    return out


def random_crop(images: np.ndarray, size: IntPair, padding: IntPair = 0, rng: RngLike = None,
                mode: str = "constant") -> np.ndarray:
    """CIFAR-style random crop: pad each side by ``padding`` (int or ``(y, x)``) -- with
    zeros (``mode='constant'``) or by mirroring the border (``'reflect'``, as
    numpy/torch's reflect: the edge pixel is not repeated) -- then cut a ``size`` (int or
    ``(h, w)``) window at an independent uniformly random position per image."""
    images = _batch(images, "random_crop")
    if mode not in ("constant", "reflect"):
        raise ValueError(f"random_crop: mode must be 'constant' or 'reflect', got {mode!r}")
    ch, cw = _pair(size, "size")
    py, px = _pair(padding, "padding")
    rng = _as_rng(rng)
    n, c, h, w = images.shape
    hp, wp = h + 2 * py, w + 2 * px
    if ch < 1 or cw < 1 or ch > hp or cw > wp:
        raise ValueError(f"random_crop: crop {ch}x{cw} does not fit padded image {hp}x{wp}")
    padded = images
    if (py or px) and mode == "reflect":
        if py >= h or px >= w:
            raise ValueError(f"random_crop: reflect padding {py}x{px} needs images larger than it, got {h}x{w}")
        padded = np.pad(images, ((0, 0), (0, 0), (py, py), (px, px)), mode="reflect")
    elif py or px:
        padded = np.zeros((n, c, hp, wp), dtype=images.dtype)
        padded[:, :, py:py + h, px:px + w] = images
    oy = rng.integers(0, hp - ch + 1, size=n)
    ox = rng.integers(0, wp - cw + 1, size=n)
    out = np.empty((n, c, ch, cw), dtype=images.dtype)
    nx = wp - cw + 1

    def copy(idx: np.ndarray, key: int) -> None:
        y, x = divmod(key, nx)
        out[idx] = padded[idx, :, y:y + ch, x:x + cw]

    _grouped_copy(oy * nx + ox, copy)
    return out


def random_hflip(images: np.ndarray, rng: RngLike = None, p: float = 0.5) -> np.ndarray:
    """Mirror each image left-right independently with probability ``p``."""
    images = _batch(images, "random_hflip")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"random_hflip: p must be in [0, 1], got {p}")
    rng = _as_rng(rng)
    flip = rng.random(images.shape[0]) < p
    out = images.copy()
    out[flip] = images[flip, :, :, ::-1]
    return out


def alternating_flip(images: np.ndarray, epoch: int, flipped: np.ndarray) -> np.ndarray:
    """The airbench "alternating flip": image i is mirrored left-right in epoch ``epoch`` when
    ``flipped[i] XOR (epoch is odd)``, with ``flipped`` (N,) bool drawn once per run (e.g.
    ``rng.random(N) < 0.5``): every image is seen both ways in consecutive epochs, instead of
    with a fresh coin per epoch."""
    images = _batch(images, "alternating_flip")
    flipped = np.asarray(flipped)
    if flipped.dtype != np.bool_ or flipped.shape != images.shape[:1]:
        raise ValueError(f"alternating_flip: flipped must be a bool array of shape {images.shape[:1]}, "
                         f"got {flipped.dtype} {flipped.shape}")
    mask = flipped ^ bool(int(epoch) % 2)
    out = images.copy()
    out[mask] = images[mask, :, :, ::-1]
    return out


class PixelPermutation:
    """One fixed, seeded permutation of the H*W pixel positions, applied
    identically to every image and channel (the "permuted MNIST" transform).

    The permutation for an ``H x W`` image is
    ``np.random.default_rng(seed).permutation(H * W)``: the same seed always
    gives the same permutation.  Works on any array whose last two axes are
    ``(H, W)``.  ``apply(x)`` (or ``x2 = perm(x)``) scrambles; ``inverse(x2)``
    restores ``x`` exactly.
    """

    def __init__(self, seed: Union[int, np.random.SeedSequence] = 0):
        self.seed = seed
        self._perms: Dict[int, np.ndarray] = {}

    def indices(self, h: int, w: int) -> np.ndarray:
        """The permutation of ``range(h * w)``: output pixel ``j`` is input pixel ``indices[j]``."""
        k = int(h) * int(w)
        if k not in self._perms:
            perm = np.random.default_rng(self.seed).permutation(k)
            perm.flags.writeable = False
            self._perms[k] = perm
        return self._perms[k]

    def _take(self, images: np.ndarray, inverse: bool) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim < 2:
            raise ValueError(f"PixelPermutation: expected (..., H, W) images, got shape {images.shape}")
        h, w = images.shape[-2:]
        perm = self.indices(h, w)
        if inverse:
            perm = np.argsort(perm)
        flat = images.reshape(images.shape[:-2] + (h * w,))
        return np.take(flat, perm, axis=-1).reshape(images.shape)

    def apply(self, images: np.ndarray) -> np.ndarray:
        return self._take(images, inverse=False)

    def inverse(self, images: np.ndarray) -> np.ndarray:
        return self._take(images, inverse=True)

    def __call__(self, images: np.ndarray, rng: RngLike = None) -> np.ndarray:
        return self.apply(images)

    def __repr__(self) -> str:
        return f"PixelPermutation(seed={self.seed!r})"


# --------------------------------------------------------------------------- composable form

class Compose:
    """Chain transforms ``t(batch, rng) -> batch``; the same ``rng`` is passed to each."""

    def __init__(self, *transforms: Transform):
        if len(transforms) == 1 and isinstance(transforms[0], (list, tuple)):
            transforms = tuple(transforms[0])
        self.transforms = tuple(transforms)

    def __call__(self, images: np.ndarray, rng: RngLike = None) -> np.ndarray:
        g = _as_rng(rng)
        for t in self.transforms:
            images = t(images, g)
        return images

    def __repr__(self) -> str:
        return f"Compose({', '.join(map(repr, self.transforms))})"


class RandomTranslate:
    def __init__(self, max_shift: IntPair):
        self.max_shift = max_shift

    def __call__(self, images: np.ndarray, rng: RngLike = None) -> np.ndarray:
        return random_translate(images, self.max_shift, rng)

    def __repr__(self) -> str:
        return f"RandomTranslate({self.max_shift!r})"


class RandomCrop:
    def __init__(self, size: IntPair, padding: IntPair = 0):
        self.size, self.padding = size, padding

    def __call__(self, images: np.ndarray, rng: RngLike = None) -> np.ndarray:
        return random_crop(images, self.size, self.padding, rng)

    def __repr__(self) -> str:
        return f"RandomCrop({self.size!r}, padding={self.padding!r})"


class RandomHFlip:
    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, images: np.ndarray, rng: RngLike = None) -> np.ndarray:
        return random_hflip(images, rng, self.p)

    def __repr__(self) -> str:
        return f"RandomHFlip(p={self.p!r})"


class Normalize:
    def __init__(self, mean, std):
        self.mean, self.std = mean, std

    def __call__(self, images: np.ndarray, rng: RngLike = None) -> np.ndarray:
        return normalize(images, self.mean, self.std)

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean!r}, std={self.std!r})"


class ToFloat32:
    def __call__(self, images: np.ndarray, rng: RngLike = None) -> np.ndarray:
        return to_float32(images)

    def __repr__(self) -> str:
        return "ToFloat32()"
