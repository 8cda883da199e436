"""Test-time augmentation: a model's logits averaged over mirrored and shifted views
of its inputs (the airbench CIFAR-10 recipe's 6 views).

level 0: the images themselves; level 1: 1/2 identity + 1/2 mirror; level 2: 1/2 of
level 1 + 1/4 for each of two 1-pixel diagonal shifts (the images reflect-padded by 1
and cut at (0, 0) and (2, 2)), each again with its mirror -- weights 1/4, 1/4, 1/8 x 4.
Logits, not probabilities, are averaged (as airbench). Inputs are float (N, C, H, W)."""
from __future__ import annotations

import numpy as np

__all__ = ["tta_logits", "TTA_WEIGHTS"]

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
