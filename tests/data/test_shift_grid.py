"""translate (a fixed zero-filled shift per batch or per image) against a naive pixel loop, and
shift_grid (the translated test set's offsets)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyconvnet.data import shift_grid, translate


def naive_translate(images, dy, dx):
    """out[..., y, x] = images[..., y - dy, x - dx] inside the frame, else 0."""
    n, c, h, w = images.shape
    out = np.zeros_like(images)
    for i in range(n):
        for y in range(h):
            for x in range(w):
                sy, sx = y - dy[i], x - dx[i]
                if 0 <= sy < h and 0 <= sx < w:
                    out[i, :, y, x] = images[i, :, sy, sx]
    return out


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 4), c=st.integers(1, 2), h=st.integers(1, 7), w=st.integers(1, 7),
       data=st.data())
def test_translate_matches_the_pixel_loop(n, c, h, w, data):
    rng = np.random.default_rng(n * 100 + h * 10 + w)
    x = rng.integers(1, 256, (n, c, h, w), dtype=np.uint8)  # no zeros: a missed pixel shows
    per_image = data.draw(st.booleans())
    if per_image:
        dy = np.array(data.draw(st.lists(st.integers(-h - 1, h + 1), min_size=n, max_size=n)))
        dx = np.array(data.draw(st.lists(st.integers(-w - 1, w + 1), min_size=n, max_size=n)))
        got = translate(x, dy, dx)
    else:
        dy0, dx0 = data.draw(st.integers(-h - 1, h + 1)), data.draw(st.integers(-w - 1, w + 1))
        got = translate(x, dy0, dx0)
        dy, dx = np.full(n, dy0), np.full(n, dx0)
    np.testing.assert_array_equal(got, naive_translate(x, dy, dx))
    assert got.dtype == x.dtype


def test_translate_moves_content_down_and_right_for_positive_offsets():
    x = np.zeros((1, 1, 28, 28), np.float32)
    x[0, 0, 10, 12] = 1.0
    y = translate(x, 4, -5)
    assert np.argwhere(y[0, 0]).tolist() == [[14, 7]]
    # a corner shift drops what leaves the frame instead of wrapping it round (np.roll would)
    x[0, 0, 27, 0] = 1.0
    assert translate(x, 4, -5)[0, 0].sum() == 1.0


def test_translate_bad_offsets():
    x = np.zeros((2, 1, 5, 5), np.uint8)
    with pytest.raises(TypeError, match="dy"):
        translate(x, 1.5, 0)
    with pytest.raises(ValueError, match=r"dx.*\(2,\)"):
        translate(x, 0, np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="N, C, H, W"):
        translate(x[0], 0, 0)


def test_shift_grid_of_the_translated_test_set():
    g = shift_grid(4, 5, 2, 1)
    assert g.shape == (55, 2) and g.dtype == np.int64
    assert sorted(set(g[:, 0].tolist())) == [-4, -2, 0, 2, 4]
    assert sorted(set(g[:, 1].tolist())) == list(range(-5, 6))
    assert len({tuple(r) for r in g.tolist()}) == 55
    # dy-major: row i * 11 + j is (dy_i, dx_j)
    assert g[0].tolist() == [-4, -5] and g[1].tolist() == [-4, -4] and g[11].tolist() == [-2, -5]
    assert g[27].tolist() == [0, 0]
    assert shift_grid(0, 0).tolist() == [[0, 0]]


@pytest.mark.parametrize("args, flag", [((3, 5, 2, 1), "max_y=3"), ((4, 5, 2, 0), "step_x"),
                                        ((-1, 5), "max_y"), ((4, 2.5), "max_x")])
def test_shift_grid_bad_arguments(args, flag):
    with pytest.raises(ValueError, match=flag):
        shift_grid(*args)
