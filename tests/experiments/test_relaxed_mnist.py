"""`pyconvnet experiment relaxed-mnist`: the smoke run on real MNIST (skipped without it)."""
from __future__ import annotations

import json
import os

import pytest


# ============================================================================ experiment smoke test
def _have_mnist():
    try:
        from pyconvnet.data import mnist

        mnist(download=False)
        return True
    except Exception:
        return False


@pytest.mark.skipif(not _have_mnist(), reason="MNIST files not found (set PYCONVNET_DATA)")
def test_experiment_smoke(tmp_path):
    from pyconvnet.experiments import relaxed_mnist

    rc = relaxed_mnist.main(["--smoke", "--out", str(tmp_path)])
    assert rc == 0
    with open(tmp_path / "results.json") as f:
        res = json.load(f)
    assert set(res["accuracy"]) == {"mnist", "shuffled"}
    assert os.path.exists(tmp_path / "fields_mnist.png")
