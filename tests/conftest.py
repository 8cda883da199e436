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
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", max_examples=200, deadline=None)
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
