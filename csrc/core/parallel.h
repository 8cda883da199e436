// Thread helpers shared by every kernel family: the OpenMP queries (usable
// without OpenMP) and the one chunked loop that elementwise kernels run on.
#pragma once
#include <algorithm>

#include "core/common.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace pcn {

inline int max_threads() {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}
inline int thread_id() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}
inline bool in_parallel() {
#ifdef _OPENMP
    return omp_in_parallel();
#else
    return true;
#endif
}

// Elements per chunk of an elementwise pass: 256 KiB of floats, large enough to
// amortise a thread's start, small enough to balance.
constexpr index_t kChunk = 65536;

// f(s, e) over [0, n) in contiguous chunks, across the threads once there are
// more than `min_chunks` of them (below that one core is faster than waking the
// others). Each chunk is a plain loop the compiler vectorises: under a combined
// "parallel for simd" with an if clause GCC left such loops scalar. Which chunk
// a thread takes never changes a result: chunks write disjoint elements.
template <typename F>
void chunked(index_t n, index_t min_chunks, F&& f) {
    const index_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) if (chunks > min_chunks)
    for (index_t c = 0; c < chunks; ++c) f(c * kChunk, std::min(n, (c + 1) * kChunk));
}

// Fixed chunks for sums over samples (weight gradients): how many is a function of
// the problem only -- at most kSumChunks, at most n, and their partial sums at most
// ~16 MiB -- never of the thread count. Each chunk is summed in sample order by
// whichever thread takes it and the chunks are added in chunk order, so a result has
// the same bits for 1 thread or 64; chunks >= threads keeps every thread busy.
constexpr index_t kSumChunks = 16;
inline index_t sum_chunks(index_t n, index_t width) {
    const index_t cap = std::max<index_t>(1, (index_t(1) << 22) / std::max<index_t>(width, 1));
    return std::max<index_t>(1, std::min({n, kSumChunks, cap}));
}
// First sample of chunk c of [0, n) in `parts` chunks (chunk_begin(n, parts, parts) == n).
inline index_t chunk_begin(index_t n, index_t parts, index_t c) { return n * c / parts; }

void set_num_threads(int n);
int get_num_threads();

}  // namespace pcn
