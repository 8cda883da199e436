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

void set_num_threads(int n);
int get_num_threads();

}  // namespace pcn
