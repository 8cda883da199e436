#include "core/block_cache.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

namespace pcn {

namespace {

constexpr std::size_t kHeader = 64;  // keeps the data 64-byte aligned for big blocks
enum Kind : std::size_t { plain = 1, big = 2 };

struct Header {
    std::size_t capacity;  // usable bytes after the header
    std::size_t kind;
};

struct Cache {
    std::mutex mu;
    std::multimap<std::size_t, char*> free_blocks;  // capacity -> block base
    std::size_t cached = 0, limit = 0;
    long long hits = 0, misses = 0, active = 0;

    void drop_all() {
        for (auto& kv : free_blocks) std::free(kv.second);
        free_blocks.clear();
        cached = 0;
    }
};

Cache& cache() {
    static Cache* c = new Cache();  // never destroyed: NumPy may free arrays after our module is gone
    return *c;
}

Header* header_of(void* p) { return reinterpret_cast<Header*>(static_cast<char*>(p) - kHeader); }

void* finish(char* base, std::size_t capacity, std::size_t kind) {
    auto* h = reinterpret_cast<Header*>(base);
    h->capacity = capacity;
    h->kind = kind;
    return base + kHeader;
}

std::size_t round_pages(std::size_t bytes) { return (bytes + 4095) / 4096 * 4096; }

}  // namespace

void* cache_malloc(std::size_t bytes) {
    if (bytes > SIZE_MAX - 8192) return nullptr;
    if (bytes < kMinCachedBytes) {
        char* base = static_cast<char*>(std::malloc(bytes + kHeader));
        return base ? finish(base, bytes, plain) : nullptr;
    }
    Cache& c = cache();
    {
        std::lock_guard<std::mutex> lock(c.mu);
        auto it = c.free_blocks.lower_bound(bytes);
        if (it != c.free_blocks.end() && it->first <= bytes + bytes / 4) {
            const std::size_t cap = it->first;
            char* base = it->second;
            c.free_blocks.erase(it);
            c.cached -= cap;
            ++c.hits;
            return finish(base, cap, big);
        }
        ++c.misses;
    }
    const std::size_t cap = round_pages(bytes + kHeader) - kHeader;
    char* base = static_cast<char*>(std::aligned_alloc(64, cap + kHeader));
    return base ? finish(base, cap, big) : nullptr;
}

void* cache_calloc(std::size_t n, std::size_t elsize) {
    if (elsize && n > (SIZE_MAX - 8192) / elsize) return nullptr;
    const std::size_t bytes = n * elsize;
    char* base = static_cast<char*>(std::calloc(1, bytes + kHeader));
    return base ? finish(base, bytes, plain) : nullptr;
}

void cache_free(void* p) {
    if (!p) return;
    Header* h = header_of(p);
    char* base = reinterpret_cast<char*>(h);
    if (h->kind == big) {
        Cache& c = cache();
        std::lock_guard<std::mutex> lock(c.mu);
        if (c.active > 0 && c.cached + h->capacity <= c.limit) {
            c.free_blocks.emplace(h->capacity, base);
            c.cached += h->capacity;
            return;
        }
    }
    std::free(base);
}

void* cache_realloc(void* p, std::size_t bytes) {
    if (!p) return cache_malloc(bytes);
    Header* h = header_of(p);
    if (h->kind == plain && bytes < kMinCachedBytes) {
        char* base = static_cast<char*>(std::realloc(reinterpret_cast<char*>(h), bytes + kHeader));
        return base ? finish(base, bytes, plain) : nullptr;
    }
    if (h->kind == big && bytes <= h->capacity && bytes >= h->capacity / 2) return p;
    void* q = cache_malloc(bytes);
    if (!q) return nullptr;  // realloc's contract: p stays valid
    std::memcpy(q, p, bytes < h->capacity ? bytes : h->capacity);
    cache_free(p);
    return q;
}

void cache_open(std::size_t limit_bytes) {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    ++c.active;
    if (limit_bytes > c.limit) c.limit = limit_bytes;
}

void cache_close() {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    if (c.active > 0 && --c.active == 0) {
        c.drop_all();
        c.limit = 0;
    }
}

void cache_trim() {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    c.drop_all();
}

BlockCacheStats cache_stats() {
    Cache& c = cache();
    std::lock_guard<std::mutex> lock(c.mu);
    return {c.cached, c.free_blocks.size(), c.limit, c.hits, c.misses, c.active};
}

}  // namespace pcn
