"""Test-time augmentation: the views and their weights."""
from __future__ import annotations

import numpy as np
import pytest

from pyconvnet import layers as L
from pyconvnet.tta import TTA_WEIGHTS, tta_logits


class _Probe(L.Layer):
    """A 'model' whose logits are its input's pixels: every view can be read back."""

    def forward(self, x, training=False):
        assert not training
        return x.reshape(len(x), -1)


def test_views_are_the_shifted_and_mirrored_images_with_airbenchs_weights():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 2, 5, 6))
    assert abs(sum(w for w, *_ in TTA_WEIGHTS[2]) - 1) < 1e-12
    pad = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="reflect")
    views = {(0, 0): x, (1, 1): pad[:, :, 0:5, 0:6], (-1, -1): pad[:, :, 2:7, 2:8]}
    want = sum(w * (views[(dy, dx)][..., ::-1] if m else views[(dy, dx)]) for w, dy, dx, m in TTA_WEIGHTS[2])
    np.testing.assert_allclose(tta_logits(_Probe(), x, 2, batch_size=2), want.reshape(3, -1), rtol=1e-12)
    np.testing.assert_allclose(tta_logits(_Probe(), x, 1), (0.5 * x + 0.5 * x[..., ::-1]).reshape(3, -1))
    np.testing.assert_allclose(tta_logits(_Probe(), x, 0), x.reshape(3, -1))
    with pytest.raises(ValueError, match="level"):
        tta_logits(_Probe(), x, 3)
    with pytest.raises(ValueError, match="images"):
        tta_logits(_Probe(), x.astype(np.int64), 0)


def test_return_views_gives_each_view_in_the_tables_order():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, 1, 4, 4))
    avg, views = tta_logits(_Probe(), x, 2, batch_size=2, return_views=True)
    assert views.shape == (6, 5, 16)
    np.testing.assert_allclose(views[0], x.reshape(5, -1))
    np.testing.assert_allclose(views[1], x[..., ::-1].reshape(5, -1))
    np.testing.assert_allclose(sum(w * v for (w, *_), v in zip(TTA_WEIGHTS[2], views)), avg, rtol=1e-12)
    with pytest.raises(ValueError, match="no samples"):
        tta_logits(_Probe(), x[:0], 2)
