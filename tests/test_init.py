"""The initialisers the airbench CIFAR-10 recipe needs: dirac (identity convolutions),
uniform_fan_in (torch's default) and patch_whitening (a whitening first layer from data)."""
from __future__ import annotations

import numpy as np
import pytest

import pyconvnet.functional as F
from pyconvnet import init


def test_dirac_convolution_is_the_identity_on_the_first_channels():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 7, 6))
    w = init.dirac((5, 3, 3, 3), dtype=np.float64)
    y = F.conv2d(x, w, padding=1)
    np.testing.assert_array_equal(y[:, :3], x)
    np.testing.assert_array_equal(y[:, 3:], 0)
    w2 = init.dirac((2, 3, 5, 5), dtype=np.float64)  # fewer outputs than inputs: the first two pass
    np.testing.assert_array_equal(F.conv2d(x, w2, padding=2), x[:, :2])
    np.testing.assert_array_equal(init.dirac((3, 4), dtype=np.float64), np.eye(3, 4))
    assert init.get("dirac") is init.dirac
    with pytest.raises(ValueError, match="shape"):
        init.dirac((3, 3, 3))


def test_uniform_fan_in_is_torchs_default_bound():
    w = init.uniform_fan_in((64, 32, 3, 3), np.random.default_rng(1), dtype=np.float64)
    b = 1 / np.sqrt(32 * 9)
    assert np.abs(w).max() <= b and np.abs(w).max() > 0.95 * b
    assert abs(w.var() - b * b / 3) < 0.05 * b * b / 3  # U(-b, b) has variance b^2 / 3


def test_patch_whitening_whitens_the_patches():
    """The first C*k*k filters map the patches to uncorrelated outputs of second moment
    lambda / (lambda + eps) ~ 1; the other half are their negatives."""
    rng = np.random.default_rng(2)
    mix = rng.standard_normal((3, 3))
    x = np.einsum("ij,njhw->nihw", mix, rng.standard_normal((40, 3, 12, 12)))  # correlated channels
    x += 0.5 * np.roll(x, 1, axis=3)  # correlated neighbours
    eps = 1e-4
    w = init.patch_whitening(x, 2, eps=eps, dtype=np.float64)
    assert w.shape == (24, 3, 2, 2)
    np.testing.assert_array_equal(w[12:], -w[:12])
    y = F.conv2d(x, w[:12]).transpose(1, 0, 2, 3).reshape(12, -1)
    m = y @ y.T / y.shape[1]
    np.testing.assert_allclose(m, np.diag(np.diag(m)), atol=1e-8)  # uncorrelated
    assert np.all(np.diag(m) <= 1.0) and np.all(np.diag(m) > 0.5)
    lam = np.diag(m) * eps / (1 - np.diag(m))  # recover the eigenvalues: descending order
    assert np.all(np.diff(lam) <= 1e-9)
    with pytest.raises(ValueError, match="images"):
        init.patch_whitening(np.zeros((3, 4, 4)))
