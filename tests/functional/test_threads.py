"""The thread knob: set_num_threads / get_num_threads, and results that do not depend
on the thread count (or on several Python threads calling the kernels at once).

Shapes are large enough to take the parallel paths of the C++ kernels (blocks
across threads, split GEMMs, parallel im2col / pooling / batch-norm loops)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import pyconvnet
from pyconvnet import functional as F

from _helpers import F32, F64, assert_close, distinct_values, rand


@pytest.fixture(autouse=True)
def restore_threads():
    n = pyconvnet.get_num_threads()
    yield n
    pyconvnet.set_num_threads(n)


def test_get_num_threads_reflects_set():
    for n in (1, 2, 3, 1):
        pyconvnet.set_num_threads(n)
        assert pyconvnet.get_num_threads() == n
    pyconvnet.set_num_threads(np.int64(2))  # any integer type
    assert pyconvnet.get_num_threads() == 2
    assert isinstance(pyconvnet.get_num_threads(), int)


@pytest.mark.parametrize("bad", [0, -1])
def test_set_num_threads_rejects_non_positive(bad):
    pyconvnet.set_num_threads(2)
    with pytest.raises(ValueError, match="set_num_threads"):
        pyconvnet.set_num_threads(bad)
    assert pyconvnet.get_num_threads() == 2  # unchanged


@pytest.mark.parametrize("bad", [1.0, "2", None])
def test_set_num_threads_rejects_non_integers(bad):
    with pytest.raises(TypeError, match="set_num_threads"):
        pyconvnet.set_num_threads(bad)


def test_fixture_restores_the_thread_count(restore_threads):
    pyconvnet.set_num_threads(1 if restore_threads != 1 else 2)
    assert pyconvnet.get_num_threads() != restore_threads  # put back by the fixture


def _workloads(dtype):
    """name -> callable returning a tuple of arrays; large enough for the parallel paths."""
    rng = np.random.default_rng(0)
    x = rand(rng, (16, 8, 20, 18), dtype)
    w = rand(rng, (16, 4, 3, 3), dtype)
    b = rand(rng, (16,), dtype)
    conv = dict(stride=1, padding=1, dilation=1, groups=2)
    gy = rand(rng, F.conv2d(x, w, b, **conv).shape, dtype)
    xs = rand(rng, (300, 6, 4, 4), dtype)  # tiny images, many samples: blocks spread across threads
    ws = rand(rng, (10, 6, 3, 3), dtype)
    gs = rand(rng, (300, 10, 2, 2), dtype)
    xd = rand(rng, (256, 12, 3, 3), dtype)  # kernel == image: the dense (one GEMM) path
    wd = rand(rng, (20, 12, 3, 3), dtype)
    gd = rand(rng, (256, 20, 1, 1), dtype)
    wt = rand(rng, (8, 3, 3, 3), dtype)
    ct = dict(stride=2, padding=1, output_padding=1, groups=2, dilation=1)
    gt = rand(rng, F.conv_transpose2d(x, wt, None, **ct).shape, dtype)
    xp = distinct_values(rng, (8, 16, 24, 24), dtype)
    gp = rand(rng, (8, 16, 12, 12), dtype)
    gp3 = rand(rng, F.max_pool2d(xp, 3, 2, 1, ceil_mode=True).shape, dtype)
    xb = rand(rng, (32, 16, 10, 10), dtype) * 2 + 1
    gb = rand(rng, xb.shape, dtype)
    wb, bb = rand(rng, (16,), dtype), rand(rng, (16,), dtype)
    xl, wl, gl = rand(rng, (512, 300), dtype), rand(rng, (200, 300), dtype), rand(rng, (512, 200), dtype)

    def bn():
        y, m, v = F.batch_norm(xb, None, None, wb, bb, training=True, return_stats=True)
        return (y, m, v) + tuple(F.batch_norm_backward(gb, xb, wb, m, v))

    def maxpool():
        y, i = F.max_pool2d(xp, 2, return_indices=True)
        y3, i3 = F.max_pool2d(xp, 3, 2, 1, ceil_mode=True, return_indices=True)
        return y, i, F.max_pool2d_backward(gp, i, xp.shape), y3, i3, F.max_pool2d_backward(gp3, i3, xp.shape)

    return {
        "conv2d": lambda: (F.conv2d(x, w, b, **conv),) + tuple(F.conv2d_backward(gy, x, w, **conv)),
        "conv2d_small_images": lambda: (F.conv2d(xs, ws, None, padding=0, stride=1),)
        + tuple(F.conv2d_backward(gs, xs, ws, padding=0, stride=1)),
        "conv2d_dense": lambda: (F.conv2d(xd, wd),) + tuple(F.conv2d_backward(gd, xd, wd)),
        "conv_transpose2d": lambda: (F.conv_transpose2d(x, wt, None, **ct),)
        + tuple(F.conv_transpose2d_backward(gt, x, wt, **ct)),
        "unfold_fold": lambda: (F.unfold(x, 3, padding=1), F.fold(F.unfold(x, 3, padding=1), (20, 18), 3, padding=1)),
        "max_pool2d": maxpool,
        "avg_pool2d": lambda: (F.avg_pool2d(xp, 3, 2, 1, ceil_mode=True, count_include_pad=False),
                               F.avg_pool2d_backward(gp3, xp.shape, 3, 2, 1, ceil_mode=True,
                                                     count_include_pad=False)),
        "batch_norm": bn,
        "linear": lambda: (F.linear(xl, wl),) + tuple(F.linear_backward(gl, xl, wl)),
    }


NAMES = sorted(_workloads(F64))


@pytest.mark.parametrize("dtype", [F32, F64])
@pytest.mark.parametrize("name", NAMES)
def test_one_and_two_threads_agree(name, dtype):
    work = _workloads(dtype)[name]
    pyconvnet.set_num_threads(1)
    one = work()
    pyconvnet.set_num_threads(2)
    two = work()
    assert pyconvnet.get_num_threads() == 2
    tol = 1e-4 if dtype == F32 else 1e-11
    for i, (a, b) in enumerate(zip(one, two)):
        assert a.dtype == b.dtype and a.shape == b.shape
        if a.dtype.kind in "iu":
            np.testing.assert_array_equal(a, b, err_msg=f"{name} output {i}")
        else:
            assert_close(b, a, dtype, f"{name} output {i}, 2 threads vs 1", tol=tol)


@pytest.mark.parametrize("name", ["conv2d", "conv2d_small_images", "max_pool2d", "batch_norm", "linear"])
def test_concurrent_python_threads_get_the_same_results(name):
    """The kernels release the GIL: four Python threads calling at once (each also using 2
    OpenMP threads) must get what a lone call gets (per-thread scratch buffers)."""
    pyconvnet.set_num_threads(2)
    work = _workloads(F64)[name]
    want = work()
    results, errors = [None] * 4, []

    def run(i):
        try:
            for _ in range(2):
                results[i] = work()
        except BaseException as e:  # noqa: B902 - re-raised below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for got in results:
        for a, b in zip(got, want):
            assert_close(a, b, F64, f"{name}: concurrent call", tol=1e-11)


@pytest.mark.parametrize("value, bad", [("abc", True), ("0", True), ("-2", True), ("2.5", True), ("2,x", True),
                                        ("2", False), ("4,2", False), (" 3 ", False), ("", False)])
def test_bad_omp_num_threads_is_named(value, bad):
    """OMP_NUM_THREADS that OpenMP would ignore is reported (at import, as a RuntimeWarning;
    the CLI test checks the text reaches stderr), never silently dropped."""
    from pyconvnet._threads import env_threads_problem

    msg = env_threads_problem(value)
    if bad:
        assert msg.startswith(f"OMP_NUM_THREADS={value!r} is not a positive integer") and "unset it" in msg
    else:
        assert msg is None
