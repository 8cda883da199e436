// GEMM and thread control. OpenBLAS (scipy-openblas32, bundled) runs with one
// thread; all parallelism is ours (OpenMP), so BLAS threads never spin against
// our loops.
#include <algorithm>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include "core/blas.h"
#include "core/parallel.h"
#include "cblas.h"

namespace pcn {

void set_num_threads(int n) {
    if (n < 1) throw std::invalid_argument("set_num_threads: n must be >= 1, got " + std::to_string(n));
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
    scipy_openblas_set_num_threads(1);
}

int get_num_threads() { return max_threads(); }

const char* blas_config() { return scipy_openblas_get_config(); }

static inline CBLAS_TRANSPOSE tr(bool t) { return t ? CblasTrans : CblasNoTrans; }

static void blas_gemm(bool ta, bool tb, index_t M, index_t N, index_t K, float alpha, const float* A, index_t lda,
                      const float* B, index_t ldb, float beta, float* C, index_t ldc) {
    scipy_cblas_sgemm(CblasRowMajor, tr(ta), tr(tb), (blasint)M, (blasint)N, (blasint)K, alpha, A, (blasint)lda, B,
                      (blasint)ldb, beta, C, (blasint)ldc);
}
static void blas_gemm(bool ta, bool tb, index_t M, index_t N, index_t K, double alpha, const double* A, index_t lda,
                      const double* B, index_t ldb, double beta, double* C, index_t ldc) {
    scipy_cblas_dgemm(CblasRowMajor, tr(ta), tr(tb), (blasint)M, (blasint)N, (blasint)K, alpha, A, (blasint)lda, B,
                      (blasint)ldb, beta, C, (blasint)ldc);
}

template <typename T>
void gemm(bool ta, bool tb, index_t M, index_t N, index_t K, T alpha, const T* A, index_t lda, const T* B,
          index_t ldb, T beta, T* C, index_t ldc, bool parallel) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {  // BLAS would only scale C; do it explicitly
        for (index_t i = 0; i < M; ++i)
            for (index_t j = 0; j < N; ++j) C[i * ldc + j] = beta == T(0) ? T(0) : beta * C[i * ldc + j];
        return;
    }
    // Below ~0.5 MFLOP a split costs more than it saves. Above, the larger of M/N is
    // cut into pieces whose size depends on the shape only -- never on the thread count
    // -- and each piece is one BLAS call (on whichever thread): OpenBLAS's result for an
    // element depends on the shape of the call that computes it, so a split by thread
    // count would make the bits depend on it (they are the same for 1 or 2 threads).
    if (!parallel || double(M) * N * K < 128.0 * 64 * 64) {
        blas_gemm(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    const bool split_n = N >= M;
    const index_t dim = split_n ? N : M;
    constexpr index_t kAlign = 16, kMinPiece = 64, kMaxPieces = 16;
    const index_t pieces = std::max<index_t>(1, std::min<index_t>(kMaxPieces, dim / kMinPiece));
    const index_t chunk = ((dim + pieces - 1) / pieces + kAlign - 1) / kAlign * kAlign;
    const index_t parts = (dim + chunk - 1) / chunk;
    const bool threads = max_threads() > 1 && !in_parallel() && parts > 1;
#pragma omp parallel for schedule(static, 1) if (threads)
    for (index_t p = 0; p < parts; ++p) {
        index_t s = p * chunk, len = std::min(chunk, dim - s);
        if (split_n) {
            const T* Bs = tb ? B + s * ldb : B + s;
            blas_gemm(ta, tb, M, len, K, alpha, A, lda, Bs, ldb, beta, C + s, ldc);
        } else {
            const T* As = ta ? A + s : A + s * lda;
            blas_gemm(ta, tb, len, N, K, alpha, As, lda, B, ldb, beta, C + s * ldc, ldc);
        }
    }
}

template void gemm<float>(bool, bool, index_t, index_t, index_t, float, const float*, index_t, const float*, index_t,
                          float, float*, index_t, bool);
template void gemm<double>(bool, bool, index_t, index_t, index_t, double, const double*, index_t, const double*,
                           index_t, double, double*, index_t, bool);

namespace {
struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
};
template <typename T>
struct Slots {
    std::unique_ptr<T, FreeDeleter> buf[kScratchSlots];
    std::size_t cap[kScratchSlots] = {};
};
}  // namespace

template <typename T>
T* scratch(int slot, std::size_t n) {
    thread_local Slots<T> s;
    if (n > s.cap[slot]) {
        std::size_t bytes = ((n * sizeof(T) + 63) / 64) * 64;
        void* p = std::aligned_alloc(64, bytes);
        if (!p) throw std::bad_alloc();
        s.buf[slot].reset(static_cast<T*>(p));
        s.cap[slot] = n;
    }
    return s.buf[slot].get();
}
template float* scratch<float>(int, std::size_t);
template double* scratch<double>(int, std::size_t);

}  // namespace pcn
