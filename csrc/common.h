// Shared helpers for every kernel family: output-size formulas (the only
// copy; Python calls them through the bindings), thread helpers, GEMM.
#pragma once
#include <cstdint>
#include <cstddef>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

// Run-time dispatch to AVX-512 copies of a few loops (target attributes,
// __builtin_cpu_supports) exists only for x86-64 with GCC or Clang.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PCN_X86_64 1
#endif

namespace pcn {

using index_t = std::int64_t;

// Whether this CPU runs the AVX-512 copies: AVX-512F and FMA (plus BW and VL when
// `bw_vl`, for byte masks). Checked once per process; false off x86-64 GCC/Clang.
inline bool cpu_has_avx512(bool bw_vl = false) {
#ifdef PCN_X86_64
    static const bool base = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
    static const bool bwvl = base && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    return bw_vl ? bwvl : base;
#else
    (void)bw_vl;
    return false;
#endif
}

// Output length of a convolution along one axis; pad_total = pad_before + pad_after.
// Geometry values (kernel, stride, padding, dilation) are bounded by the
// bindings to kMaxGeometry, so the products below cannot overflow int64; the
// helpers still return 0 (no output) for invalid values instead of dividing by 0.
constexpr index_t kMaxGeometry = index_t(1) << 30;

inline bool geometry_ok(index_t in, index_t k, index_t stride, index_t pad, index_t dilation) {
    return in >= 0 && k >= 1 && stride >= 1 && pad >= 0 && dilation >= 1 && k <= kMaxGeometry &&
           stride <= kMaxGeometry && pad <= 2 * kMaxGeometry && dilation <= kMaxGeometry && in <= (index_t(1) << 40);
}

inline index_t conv_out_size(index_t in, index_t k, index_t stride, index_t pad_total, index_t dilation) {
    if (!geometry_ok(in, k, stride, pad_total, dilation)) return 0;
    index_t span = dilation * (k - 1) + 1;
    if (in + pad_total < span) return 0;
    return (in + pad_total - span) / stride + 1;
}

// Output length of a transposed convolution along one axis.
inline index_t conv_transpose_out_size(index_t in, index_t k, index_t stride, index_t pad,
                                       index_t dilation, index_t output_padding) {
    if (!geometry_ok(in, k, stride, pad, dilation) || output_padding < 0 || output_padding > kMaxGeometry) return 0;
    return (in - 1) * stride - 2 * pad + dilation * (k - 1) + output_padding + 1;
}

// Output length of pooling (torch's pooling_output_shape): with ceil_mode the
// last window must still start inside the input or the left padding.
inline index_t pool_out_size(index_t in, index_t k, index_t stride, index_t pad, index_t dilation, bool ceil_mode) {
    if (!geometry_ok(in, k, stride, pad, dilation)) return 0;
    index_t num = in + 2 * pad - dilation * (k - 1) - 1 + (ceil_mode ? stride - 1 : 0);
    if (num < 0) return 0;
    index_t out = num / stride + 1;
    if (ceil_mode && (out - 1) * stride >= in + pad) --out;
    return out;
}

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

void set_num_threads(int n);
int get_num_threads();

// Row-major GEMM through OpenBLAS (always single-threaded inside): C = alpha*op(A)@op(B) + beta*C.
// With parallel=true and called outside a parallel region, the larger of M/N is
// split across our OpenMP threads, each calling the single-threaded BLAS on its slice.
template <typename T>
void gemm(bool transA, bool transB, index_t M, index_t N, index_t K, T alpha, const T* A, index_t lda,
          const T* B, index_t ldb, T beta, T* C, index_t ldc, bool parallel = false);

// Per-thread scratch that survives across calls: fresh pages are expensive on
// these VMs (see PERF_NOTES), so im2col buffers are reused, never reallocated.
template <typename T>
T* scratch(int slot, std::size_t n);

}  // namespace pcn
