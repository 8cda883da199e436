"""pyconvnet.memory.cached_allocations: NumPy's array data through the block cache."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from pyconvnet import functional as F
from pyconvnet import memory

MIB = 1 << 20


def _addr(a):
    return a.__array_interface__["data"][0]


def test_a_freed_block_is_reused_for_the_next_array_of_its_size():
    with memory.cached_allocations():
        a = np.empty(3 * MIB // 4, np.float32)  # 3 MiB
        where = _addr(a)
        del a
        before = memory.cache_stats()
        assert before["cached_blocks"] >= 1 and before["active"] >= 1
        b = np.empty(3 * MIB // 4 - 100, np.float32)  # a little smaller: best fit within +25%
        after = memory.cache_stats()
        assert after["hits"] == before["hits"] + 1
        assert _addr(b) == where
        c = np.empty(MIB, np.float32)  # 4 MiB: nothing idle fits, a new block
        assert memory.cache_stats()["misses"] == after["misses"] + 1
        del b, c
    assert memory.cache_stats()["cached_bytes"] == 0 and memory.cache_stats()["active"] == 0


def test_outside_the_block_nothing_is_cached():
    with memory.cached_allocations():
        pass
    hits = memory.cache_stats()["hits"]
    for _ in range(3):
        a = np.ones(2 * MIB, np.uint8)
        del a
    assert memory.cache_stats()["hits"] == hits and memory.cache_stats()["cached_bytes"] == 0


def test_values_are_the_same_with_and_without_the_cache():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 16, 32, 32)).astype(np.float32)
    w = rng.standard_normal((32, 16, 3, 3)).astype(np.float32)
    want = F.conv2d(x, w, padding=1)
    with memory.cached_allocations():
        for _ in range(3):  # later passes run on reused blocks, holding old values
            got = F.conv2d(x, w, padding=1)
            np.testing.assert_array_equal(got, want)
            z = np.zeros((1024, 1024), np.float32)  # calloc: zero even where blocks were reused
            assert not z.any()
            del got, z


def test_realloc_keeps_the_contents_and_arrays_outlive_the_block():
    with memory.cached_allocations():
        a = np.arange(300_000, dtype=np.float64)  # 2.4 MB
        a.resize(700_000, refcheck=False)  # NumPy reallocs the data
        kept = np.arange(MIB, dtype=np.float32)
        small = np.arange(10)
        small.resize(200_000, refcheck=False)  # small -> big through realloc
    np.testing.assert_array_equal(a[:300_000], np.arange(300_000, dtype=np.float64))
    np.testing.assert_array_equal(small[:10], np.arange(10))
    assert kept[-1] == MIB - 1
    del a, kept, small  # freed by the cache's functions after the block: back to the system
    assert memory.cache_stats()["cached_bytes"] == 0


def test_limit_zero_caches_nothing_and_nested_blocks_keep_it_open():
    with memory.cached_allocations(limit_bytes=0):
        a = np.empty(2 * MIB, np.uint8)
        del a
        assert memory.cache_stats()["cached_bytes"] == 0
    with memory.cached_allocations():
        with memory.cached_allocations():
            assert memory.cache_stats()["active"] == 2
        a = np.empty(2 * MIB, np.uint8)
        del a
        assert memory.cache_stats()["cached_bytes"] >= 2 * MIB  # still open after the inner block
    assert memory.cache_stats()["cached_bytes"] == 0


def test_arrays_freed_on_other_threads():
    with memory.cached_allocations():
        arrays = [np.empty(MIB + i, np.uint8) for i in range(8)]

        def drop():
            while arrays:
                arrays.pop()

        threads = [threading.Thread(target=drop) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert memory.cache_stats()["cached_blocks"] >= 8


@pytest.mark.parametrize("bad", [-1, 1.5, "1", True])
def test_bad_limit(bad):
    with pytest.raises(ValueError, match="limit_bytes"):
        with memory.cached_allocations(limit_bytes=bad):
            pass
