"""The one global seed: ``pyconvnet.manual_seed(seed)`` (torch's name).

Every random draw that is not given its own generator or seed comes from the one
generator held here: weight initialisation of layers built without ``rng``/``seed``,
Dropout layers built without one, ``functional.dropout`` without ``seed``, and the
shuffling of ``training.fit`` without ``seed``. After ``manual_seed(s)`` a script
that builds and trains in the same order is reproducible; before it, the generator
starts from fresh entropy (NumPy's convention: runs differ). Explicit seeds (the zoo
builders' ``seed=0``, the CLI's ``--seed``) never touch it.

A leaf module: it imports nothing from pyconvnet."""
from __future__ import annotations

import operator

import numpy as np

__all__ = ["manual_seed", "global_rng", "draw_seed"]

_rng = np.random.default_rng()


def manual_seed(seed) -> np.random.Generator:
    """Reseeds the global generator with ``seed`` (a non-negative int); returns it."""
    global _rng
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"seed: expected a non-negative int, got bool {seed!r}")
    try:
        s = operator.index(seed)
    except TypeError:
        raise TypeError(f"seed: expected a non-negative int, got {seed!r}") from None
    if s < 0:
        raise ValueError(f"seed: expected a non-negative int, got {s}")
    _rng = np.random.default_rng(s)
    return _rng


def global_rng() -> np.random.Generator:
    """The global generator (shared: consecutive users draw consecutive numbers)."""
    return _rng


def draw_seed() -> int:
    """A 63-bit int seed drawn from the global generator."""
    return int(_rng.integers(0, 2**63))
