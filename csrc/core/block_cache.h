// A cache of large memory blocks for NumPy's array data (bind/bind_memory.cpp
// installs it as NumPy's allocator while pyconvnet.cached_allocations() is active).
//
// Why: glibc serves every block above 32 MiB with a fresh mmap, so each training
// step's activations and gradients (hundreds of MiB at batch 1024) come back as new
// pages the kernel must fault in and zero: 11% of the CIFAR-10 speedrun's time went
// to clear_page. Freed blocks kept here are reused by the next step's arrays of
// about the same size (best fit within +25%), as PyTorch's caching allocators do.
//
// Every block carries a 64-byte header (its capacity and kind) in front of the
// pointer handed out, so free/realloc work from the pointer alone. Blocks below
// kMinCachedBytes, and calloc's (fresh mmap pages are already zero), are plain
// malloc'd and never cached. Thread-safe (one mutex; a hit is a map lookup).
#pragma once
#include <cstddef>

namespace pcn {

constexpr std::size_t kMinCachedBytes = std::size_t(1) << 20;

struct BlockCacheStats {
    std::size_t cached_bytes, cached_blocks, limit_bytes;
    long long hits, misses, active;
};

void* cache_malloc(std::size_t bytes);
void* cache_calloc(std::size_t n, std::size_t elsize);
void* cache_realloc(void* p, std::size_t bytes);
void cache_free(void* p);

// Users of the cache (cached_allocations blocks) open and close it; while none is
// open, freed blocks go straight back to the system. close() of the last user
// releases everything cached.
void cache_open(std::size_t limit_bytes);
void cache_close();
void cache_trim();  // free every cached block now
BlockCacheStats cache_stats();

}  // namespace pcn
