"""The environment pyconvnet gives OpenMP and OpenBLAS when _core loads (pyconvnet/_threads.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyconvnet

# The pyconvnet under test (the installed one in CI: the source tree holds no compiled _core there);
# the probe runs there too, since `python -c` puts its working directory first on sys.path.
PKG_ROOT = Path(pyconvnet.__file__).resolve().parent.parent
PROBE = ("import os, json, pyconvnet._threads as t; print(json.dumps([t.SPIN_APPLIED, "
         "os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OPENBLAS_NUM_THREADS')]))")


def _probe(**env):
    e = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OPENBLAS_NUM_THREADS")}
    e.update(env)
    e["PYTHONPATH"] = str(PKG_ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", PROBE], env=e, cwd=PKG_ROOT, capture_output=True, text=True,
                         timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_short_spin_by_default_and_the_environment_left_as_found():
    assert _probe() == [True, None, None]


def test_the_users_wait_policy_or_spin_count_wins():
    assert _probe(OMP_WAIT_POLICY="active") == [False, None, None]
    assert _probe(GOMP_SPINCOUNT="123", OPENBLAS_NUM_THREADS="4") == [False, "123", "4"]
