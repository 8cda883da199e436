"""Shared pytest setup: hypothesis profiles. CI uses the bounded, derandomized
'ci' profile (HYPOTHESIS_PROFILE=ci); 'dev' explores more, randomly."""
import os

import pytest
from hypothesis import HealthCheck, settings

import pyconvnet

settings.register_profile(
    "ci",
    max_examples=40,
    derandomize=True,
    deadline=None,
    print_blob=True,
    # function_scoped_fixture: the `isa` fixture sets the target once per test item,
    # the same for every example hypothesis draws in it
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
settings.register_profile("dev", max_examples=200, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(scope="module")
def one_thread():
    """Runs a module single-threaded and restores the thread count after. For
    modules of many tiny kernels (finite differences): on a busy 2-core machine
    each OpenMP fork/join can stall for a scheduler quantum. The threaded paths
    are covered by test_threads.py and the layers' 1-vs-2-thread test."""
    n = pyconvnet.get_num_threads()
    pyconvnet.set_num_threads(1)
    yield
    pyconvnet.set_num_threads(n)


# Every instruction-set target this CPU runs (best first): kernel tests that take the
# `isa` fixture run once per target, so the AVX-512, AVX2 and portable copies all
# face the same tests on the machine that runs them.
AVAILABLE_ISAS = list(pyconvnet._core._isas()[1])
LANES = {"avx512": 16, "avx2": 8, "baseline": 4}


@pytest.fixture(params=AVAILABLE_ISAS)
def isa(request):
    """The kernels' target for one test (restored after); its value is the target's name."""
    prev = pyconvnet._core._set_isa(request.param)
    yield request.param
    pyconvnet._core._set_isa(prev)
