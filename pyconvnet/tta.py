"""Test-time augmentation: a model's logits averaged over mirrored and shifted views
of its inputs (the airbench CIFAR-10 recipe's 6 views).

level 0: the images themselves; level 1: 1/2 identity + 1/2 mirror; level 2: 1/2 of
level 1 + 1/4 for each of two 1-pixel diagonal shifts (the images reflect-padded by 1
and cut at (0, 0) and (2, 2)), each again with its mirror -- weights 1/4, 1/4, 1/8 x 4.
Logits, not probabilities, are averaged (as airbench). Inputs are float (N, C, H, W).

Also :func:`shifted_predictions`: a model's predicted labels for every image under each offset of
a fixed shift grid (zero fill), the translated test set of the LeNet-5 translation report
(Tohoku Univ.)."""
from __future__ import annotations

import numpy as np

__all__ = ["tta_logits", "TTA_WEIGHTS", "shifted_predictions"]

# level -> [(weight, dy, dx, mirror)]: the shift moves content by (dy, dx) (reflect padding)
TTA_WEIGHTS = {
    0: [(1.0, 0, 0, False)],
    1: [(0.5, 0, 0, False), (0.5, 0, 0, True)],
    2: [(0.25, 0, 0, False), (0.25, 0, 0, True), (0.125, 1, 1, False), (0.125, 1, 1, True),
        (0.125, -1, -1, False), (0.125, -1, -1, True)],
}


def _view(x, dy, dx, mirror):
    if dy or dx:
        h, w = x.shape[2:]
        p = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
        x = p[:, :, 1 - dy:1 - dy + h, 1 - dx:1 - dx + w]
    if mirror:
        x = x[:, :, :, ::-1]
    return np.ascontiguousarray(x)


def tta_logits(model, images, level=2, batch_size=500, return_views=False):
    """(N, classes) logits of ``model`` (inference mode) averaged over the views of ``level``;
    with ``return_views``, also each view's own logits, (views, N, classes) in
    ``TTA_WEIGHTS[level]``'s order (view 0 is the images themselves: plain accuracy for free)."""
    if level not in TTA_WEIGHTS:
        raise ValueError(f"level: expected 0, 1 or 2, got {level!r}")
    x = np.asarray(images)
    if x.ndim != 4 or x.dtype.kind != "f":
        raise ValueError(f"images: expected float (N, C, H, W) images, got {x.dtype} {x.shape}")
    if len(x) == 0:
        raise ValueError("images: no samples")
    parts, views = [], []
    for s in range(0, len(x), batch_size):
        xb = x[s:s + batch_size]
        acc, vb = None, []
        for wgt, dy, dx, mirror in TTA_WEIGHTS[level]:
            y = np.asarray(model.forward(_view(xb, dy, dx, mirror), training=False), dtype=np.float64)
            vb.append(y)
            acc = y * wgt if acc is None else acc + y * wgt
        parts.append(acc)
        views.append(np.stack(vb))
    out = np.concatenate(parts)
    return (out, np.concatenate(views, axis=1)) if return_views else out


def shifted_predictions(model, images, shifts, batch_size=64, transform=None):
    """Predicted labels (K, N) int64 of ``model`` (inference mode) for ``images`` (N, C, H, W)
    moved by each offset ``shifts[k] = (dy, dx)`` (an int (K, 2) array such as
    :func:`pyconvnet.data.shift_grid`; zero fill, see :func:`pyconvnet.data.translate`).

    Row k equals ``argmax(predict(model, translate(images, dy_k, dx_k)))``; the K * N forward
    passes run in batches of ``batch_size`` (small batches keep the activations in cache; freed
    arrays are reused, :func:`pyconvnet.memory.cached_allocations`). ``transform`` turns stored
    images into network input (default: uint8 -> [0, 1] float32), after the shift."""
    from .data import to_float, translate
    from .memory import cached_allocations

    x = np.asarray(images)
    if x.ndim != 4 or len(x) == 0:
        raise ValueError(f"images: expected a non-empty batch shaped (N, C, H, W), got shape {x.shape}")
    s = np.asarray(shifts)
    if s.ndim != 2 or s.shape[1] != 2 or len(s) == 0 or s.dtype.kind not in "iu":
        raise ValueError(f"shifts: expected integer offsets shaped (K, 2) (dy, dx), got {s.dtype} {s.shape}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
    transform = transform or to_float
    out = np.empty((len(s), len(x)), dtype=np.int64)
    with cached_allocations():
        for k, (dy, dx) in enumerate(s):
            moved = translate(x, int(dy), int(dx))
            for a in range(0, len(x), batch_size):
                logits = model.forward(transform(moved[a:a + batch_size]), training=False)
                out[k, a:a + batch_size] = np.argmax(logits, axis=1)
    return out
