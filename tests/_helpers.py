"""Shared helpers for the functional-API tests (test_functional, test_gradients,
test_invariants, test_bad_input, test_bindings_fuzz, test_threads).

* ``check_op``: tinygrad's ``helper_test_op`` for a NumPy API. One call runs a
  forward and its backward through two implementations (pyconvnet.functional
  and the naive loop oracle pyconvnet.reference, or any two modules with the
  same names), compares every output and every gradient with a dtype-aware
  tolerance, checks dtypes and that no input was modified.
* ``check_grad``: central finite differences of the fake loss ``sum(f(x) * dout)``
  through ``pyconvnet.gradcheck``, element by element for small tensors and along
  random directions (chainer's ``check_backward`` style) for large ones.
* hypothesis strategies for window geometries (conv, transposed conv, pooling).
* ``run_isolated``: runs a function in a forked child, so a segfault in the C++
  kernels is reported as a test failure naming the input instead of killing pytest.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings

import numpy as np
import pytest
from hypothesis import strategies as st

# When a hypothesis test fails, hypothesis' pytest plugin imports hypothesis.extra._patching,
# which imports libcst where that is installed; libcst's import emits a DeprecationWarning that
# filterwarnings=error turns into an INTERNALERROR ending the whole session. Importing it once
# here, warnings silenced, keeps a failing example a plain test failure.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    try:
        import hypothesis.extra._patching  # noqa: F401
    except Exception:  # noqa: BLE001 - optional, absent without libcst
        pass

import pyconvnet
from pyconvnet import functional as F
from pyconvnet import gradcheck

F32, F64 = np.float32, np.float64
DTYPES = (F32, F64)
# Relative tolerance (also absolute, scaled by the largest reference magnitude).
TOL = {np.dtype(F64): 1e-10, np.dtype(F32): 1e-4}
# Where the source directory of the pyconvnet under test lives (for subprocesses).
PKG_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(pyconvnet.__file__)))


def reference():
    """The naive loop oracle (imported lazily: only test_functional needs it)."""
    from pyconvnet import reference as ref

    return ref


# ----------------------------------------------------------------------------- comparison
def as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def assert_close(got, want, dtype, name="", tol=None):
    """|got - want| <= tol * max(|want|_max, 1) + tol * |want|, with matching shape
    (None must match None)."""
    if want is None or got is None:
        assert got is None and want is None, f"{name}: got {type(got).__name__}, want {type(want).__name__}"
        return
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, f"{name}: shape {got.shape} != reference {want.shape}"
    tol = TOL[np.dtype(dtype)] if tol is None else tol
    if got.dtype.kind in "iu" or want.dtype.kind in "iu":
        np.testing.assert_array_equal(got, want, err_msg=name)
        return
    g64, w64 = got.astype(F64), want.astype(F64)
    fin = np.isfinite(w64)
    # non-finite entries (e.g. -inf of a max-pool window lying wholly in the padding) must match exactly
    np.testing.assert_array_equal(g64[~fin], w64[~fin], err_msg=f"{name}: non-finite entries differ")
    scale = max(1.0, float(np.abs(w64[fin]).max())) if fin.any() else 1.0
    np.testing.assert_allclose(g64[fin], w64[fin], rtol=tol, atol=tol * scale, err_msg=name)


def copies(arrays):
    return [None if a is None else np.array(a, copy=True) for a in arrays]


def assert_unchanged(arrays, saved, what):
    for i, (a, s) in enumerate(zip(arrays, saved)):
        if a is not None and isinstance(a, np.ndarray):
            np.testing.assert_array_equal(a, s, err_msg=f"{what} modified input #{i}")


def check_op(fwd, bwd=None, *, inputs=(), dtype=F64, rng=None, impls=None, tol=None, names=None,
             grad_out_index=0, out_dtypes=None):
    """Forward and backward of one op through two implementations, compared.

    fwd(M) -> output or tuple of outputs, where M is a module (pyconvnet.functional
    or the reference); bwd(M, grad_out, fwd_outputs) -> tuple of gradients, with
    grad_out random and shaped like fwd output ``grad_out_index``. ``inputs``: the
    arrays both calls read, checked unmodified afterwards. Floating outputs must
    have ``dtype`` unless ``out_dtypes`` says otherwise. Returns (outs, grads) of
    the first implementation (functional by default)."""
    impls = impls or (F, reference())
    rng = rng if rng is not None else np.random.default_rng(0)
    saved = copies(inputs)
    outs = [as_tuple(fwd(m)) for m in impls]
    assert_unchanged(inputs, saved, "forward")
    got, want = outs
    assert len(got) == len(want), f"forward: {len(got)} outputs, reference {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        label = names[i] if names else f"output[{i}]"
        if g is not None and np.asarray(g).dtype.kind == "f":
            exp = out_dtypes[i] if out_dtypes else dtype
            assert np.asarray(g).dtype == exp, f"{label}: dtype {np.asarray(g).dtype}, expected {np.dtype(exp)}"
        assert_close(g, w, dtype, f"forward {label}", tol)
    if bwd is None:
        return got, None
    gout = rng.standard_normal(np.shape(got[grad_out_index])).astype(dtype)
    gsaved = np.array(gout, copy=True)
    grads = [as_tuple(bwd(m, gout, o)) for m, o in zip(impls, outs)]
    assert_unchanged(inputs, saved, "backward")
    np.testing.assert_array_equal(gout, gsaved, err_msg="backward modified grad_out")
    assert len(grads[0]) == len(grads[1]), "backward: different number of gradients"
    for i, (g, w) in enumerate(zip(*grads)):
        if g is not None:
            assert np.asarray(g).dtype == dtype, f"grad[{i}]: dtype {np.asarray(g).dtype}, expected {np.dtype(dtype)}"
        assert_close(g, w, dtype, f"gradient[{i}]", tol)
    return got, grads[0]


# ----------------------------------------------------------------------------- finite differences
def check_grad(forward, params, analytic, dout, *, tol=1e-6, eps=1e-6, max_elems=64, rng=None, names=None):
    """Checks analytic gradients against finite differences of sum(forward() * dout), through
    the library's own checker (pyconvnet.gradcheck: the one finite-difference core).

    forward() reads the float64 arrays in ``params`` (perturbed in place);
    analytic[i] is the claimed gradient for params[i]. Tensors with more than
    ``max_elems`` elements are checked along 3 random directions instead of per element."""
    rng = rng if rng is not None else np.random.default_rng(0)

    def loss():
        return float(np.sum(forward() * dout))

    for i, (p, a) in enumerate(zip(params, analytic)):
        label = names[i] if names else f"param[{i}]"
        assert a is not None, f"{label}: no analytic gradient"
        assert a.shape == p.shape, f"{label}: gradient shape {a.shape} != {p.shape}"
        gradcheck.check_gradient(loss, p, a, eps=eps, tol=tol, max_elements=max_elems, directions=3, rng=rng,
                                 what=label)


# ----------------------------------------------------------------------------- data
def distinct_values(rng, shape, dtype=F64):
    """A random permutation of well-separated values (gap 1/8, exact in float32): no max-pool ties,
    no kinks within a finite-difference step."""
    n = int(np.prod(shape))
    return ((rng.permutation(n) - n / 2) / 8).reshape(shape).astype(dtype)


def rand(rng, shape, dtype=F64):
    return rng.standard_normal(shape).astype(dtype)


seeds = st.integers(0, 2**32 - 1)
dtypes = st.sampled_from(DTYPES)


def span(k, d):
    return d * (k - 1) + 1


@st.composite
def conv_configs(draw, max_hw=7, allow_same=True, max_n=2):
    """A valid conv2d geometry: dict(n, groups, cin, cout, k, stride, padding, dilation, hw, pad4)."""
    groups = draw(st.integers(1, 3))
    cin = groups * draw(st.integers(1, 2))
    cout = groups * draw(st.integers(1, 2))
    n = draw(st.integers(1, max_n))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    mode = draw(st.sampled_from(["int", "pair", "valid", "same"] if allow_same else ["int", "pair", "valid"]))
    if mode == "same":
        stride = (1, 1)
        padding = "same"
        pad4 = []
        for kk, d in zip(k, dil):
            tot = d * (kk - 1)
            pad4 += [tot // 2, tot - tot // 2]
        pad4 = tuple(pad4)
    else:
        stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))  # includes stride > kernel
        if mode == "int":
            p = draw(st.integers(0, 2))
            padding, pad4 = p, (p, p, p, p)
        elif mode == "pair":
            ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
            padding, pad4 = (ph, pw), (ph, ph, pw, pw)
        else:
            padding, pad4 = "valid", (0, 0, 0, 0)
    hw = []
    for i in range(2):
        lo = max(1, span(k[i], dil[i]) - pad4[2 * i] - pad4[2 * i + 1])
        hw.append(draw(st.integers(lo, max(lo, max_hw))))
    stride_arg = draw(st.sampled_from([stride, list(stride)])) if stride[0] != stride[1] else \
        draw(st.sampled_from([stride, stride[0]]))
    return dict(n=n, groups=groups, cin=cin, cout=cout, k=k, stride=stride_arg, padding=padding,
                dilation=dil, hw=tuple(hw), pad4=pad4)


@st.composite
def conv_transpose_configs(draw, max_hw=5):
    """A valid conv_transpose2d geometry, output_padding < stride or < dilation, output size >= 1."""
    groups = draw(st.integers(1, 3))
    cin = groups * draw(st.integers(1, 2))
    cout = groups * draw(st.integers(1, 2))
    n = draw(st.integers(1, 2))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    hw = (draw(st.integers(1, max_hw)), draw(st.integers(1, max_hw)))
    op, pad = [], []
    for i in range(2):
        op.append(draw(st.integers(0, max(stride[i], dil[i]) - 1)))
        full = (hw[i] - 1) * stride[i] + dil[i] * (k[i] - 1) + op[i] + 1  # output size with padding 0
        pad.append(draw(st.integers(0, min(2, (full - 1) // 2))))
    return dict(n=n, groups=groups, cin=cin, cout=cout, k=k, stride=stride, padding=tuple(pad),
                output_padding=tuple(op), dilation=dil, hw=hw)


@st.composite
def pool_configs(draw, max_hw=7, dilation=True):
    """A valid pooling geometry (torch's rules: padding <= kernel/2, ceil_mode) with at least one output."""
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(1, 4))))  # None: = kernel
    pad = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilation else (1, 1)
    ceil_mode = draw(st.booleans())
    hw = []
    for i in range(2):
        lo = max(1, span(k[i], dil[i]) - 2 * pad[i])
        hw.append(draw(st.integers(lo, max(lo, max_hw))))
    n = draw(st.integers(1, 2))
    c = draw(st.integers(1, 2))
    return dict(n=n, c=c, k=k, stride=stride, padding=pad, dilation=dil, ceil_mode=ceil_mode, hw=tuple(hw))


# ----------------------------------------------------------------------------- isolation
def run_isolated(fn, *args, timeout=60):
    """Runs fn(*args, log=path) in a forked child; fn appends a description of each
    input to ``log`` (log_case) before calling into C++. A child killed by a signal
    (segfault, abort) or still running after ``timeout`` seconds fails the test with
    the last logged input; a Python exception in the child (hypothesis' shrunk
    falsifying example included) fails it with the child's traceback."""
    if not hasattr(os, "fork"):  # pragma: no cover - no fork: run in-process
        return fn(*args, log=os.devnull)
    with tempfile.TemporaryDirectory() as tmp:
        log, err = os.path.join(tmp, "log"), os.path.join(tmp, "err")
        open(log, "w").close()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # child: never returns into pytest
            code = 0
            try:
                pyconvnet.set_num_threads(1)  # no OpenMP team after a fork
                fn(*args, log=log)
            except BaseException:  # noqa: B902 - report everything to the parent
                with open(err, "w") as f:
                    f.write(traceback.format_exc())
                code = 1
            finally:
                os._exit(code)
        deadline = time.monotonic() + timeout
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                status = None
                break
            time.sleep(0.01)
        with open(log) as f:
            lines = f.read().splitlines()
        last = lines[-1] if lines else "<nothing logged>"
        if status is None:
            pytest.fail(f"still running after {timeout} s (hang) on the input:\n{last}")
        if os.WIFSIGNALED(status):
            pytest.fail(f"crashed with signal {os.WTERMSIG(status)} on the input:\n{last}")
        if os.WEXITSTATUS(status) != 0:
            with open(err) as f:
                pytest.fail(f"failed in the isolated child:\n{f.read()}", pytrace=False)


def log_case(log, text):
    with open(log, "a") as f:
        f.write(text.replace("\n", " ") + "\n")


def run_python(code, timeout=30):
    """Runs ``code`` in a fresh interpreter importing this pyconvnet; returns the CompletedProcess
    (returncode < 0 means it was killed by a signal). A timeout is reported as returncode None."""
    env = dict(os.environ, PYTHONPATH=PKG_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1")
    try:
        # cwd outside the repository: `python -c` puts the cwd first on sys.path, and
        # there the uncompiled source tree would shadow the installed package.
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env,
                              cwd=tempfile.gettempdir())
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(e.cmd, None, "", f"timed out after {timeout} s")
