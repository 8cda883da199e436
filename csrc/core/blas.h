// GEMM through OpenBLAS and the per-thread scratch buffers the kernels reuse.
#pragma once
#include <cstddef>

#include "core/common.h"

namespace pcn {

// Row-major GEMM through OpenBLAS (always single-threaded inside): C = alpha*op(A)@op(B) + beta*C.
// With parallel=true and called outside a parallel region, the larger of M/N is
// split across our OpenMP threads, each calling the single-threaded BLAS on its slice.
template <typename T>
void gemm(bool transA, bool transB, index_t M, index_t N, index_t K, T alpha, const T* A, index_t lda,
          const T* B, index_t ldb, T beta, T* C, index_t ldc, bool parallel = false);

// Per-thread scratch that survives across calls: fresh pages are expensive on
// these VMs (see PERF_NOTES), so im2col buffers are reused, never reallocated.
// A slot's contents are not kept across kernel calls, and a kernel must not use a
// slot that something it calls uses too:
//   0  im2col columns (conv.cpp), the direct conv's padded sample, Winograd's tiles
//   1  conv.cpp's gathered blocks, the direct weight gradient's transposed gy, Winograd's products
//   2  im2col's two-stage rows (im2col.cpp), Winograd's channel-last copies
//   3  the relaxed contraction's blocks (relaxed.cpp), Winograd's kernels and partial sums
//   4  conv.cpp's weight-gradient partial sums (around im2col, which uses 0-2)
constexpr int kScratchSlots = 5;
template <typename T>
T* scratch(int slot, std::size_t n);

// The bundled OpenBLAS's configuration string.
const char* blas_config();

}  // namespace pcn
