// ReLU in one pass each way (NumPy needs a mask temporary for the backward).
// Work is split into contiguous chunks, each a plain restrict loop the compiler
// vectorises (a combined "parallel for simd" with an if clause was left scalar).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include "core/cpu.h"
#include "core/parallel.h"
#include "kernels/activation.h"
#include "kernels/fastmath.h"

namespace pcn {

template <typename T>
void relu_forward(const T* __restrict x, T* __restrict y, index_t n) {
    chunked(n, 4, [=](index_t s, index_t e) {
        for (index_t i = s; i < e; ++i) y[i] = x[i] <= T(0) ? T(0) : x[i];  // NaN propagates, as torch
    });
}

template <typename T>
void relu_backward(const T* __restrict gy, const T* __restrict y, T* __restrict gx, index_t n) {
    // A float select with both operands loaded first: with -fno-trapping-math
    // (CMakeLists) GCC vectorises it to a blend; otherwise it emits a branch that
    // mispredicts on real data (10x slower). NaN y gives 0, as torch.
    chunked(n, 4, [=](index_t s, index_t e) {
#pragma omp simd
        for (index_t i = s; i < e; ++i) {
            const T g = gy[i], v = y[i];  // both loaded unconditionally, or GCC keeps a branch
            gx[i] = v > T(0) ? g : T(0);
        }
    });
}

namespace {
// Branch-free (every value computed, then selected) so the loop vectorises.
template <bool kFloor = false>
[[gnu::always_inline]] inline float sigmoid_one(float x) {
    const float a = std::fabs(x);
    const float m = -(a < 87.3f ? a : 87.3f);  // NaN compares false: m = -87.3, no UB in exp_nonpos
    const float ex = exp_nonpos<kFloor>(m);
    const float e = a > 87.3f ? 0.0f : ex;
    const float inv = 1.0f / (1.0f + e);
    const float neg = e * inv;  // sigmoid(-|x|) = e / (1 + e) keeps small values exact
    const float y = x >= 0.0f ? inv : neg;
    return x != x ? x : y;
}
template <bool kFloor = false>
inline double sigmoid_one(double x) {
    const double e = std::exp(-std::fabs(x));
    const double inv = 1.0 / (1.0 + e);
    return x >= 0.0 ? inv : (x != x ? x : e * inv);
}
}  // namespace

// The exp polynomial is ~20 vector operations per element: at SSE2's 4 lanes the float
// loop cost ~1.7 ns/element, a third of mlp3's non-GEMM time. The same loop is
// compiled for AVX2 + FMA (8 lanes) and AVX-512 (16) and the copy of the target in
// use runs (core/cpu.h), so the wheel runs everywhere. The copies may differ in the
// last bit (FMA contraction): no test relies on bit equality across targets.
namespace {
#ifdef PCN_X86_64
__attribute__((target("avx512f,fma"))) void sigmoid_span_avx512(const float* __restrict x, float* __restrict y,
                                                               index_t s, index_t e) {
#pragma omp simd
    for (index_t i = s; i < e; ++i) y[i] = sigmoid_one<true>(x[i]);
}
__attribute__((target("avx2,fma"))) void sigmoid_span_avx2(const float* __restrict x, float* __restrict y, index_t s,
                                                          index_t e) {
#pragma omp simd
    for (index_t i = s; i < e; ++i) y[i] = sigmoid_one<true>(x[i]);
}
#endif
void sigmoid_span(const float* __restrict x, float* __restrict y, index_t s, index_t e) {
#ifdef PCN_X86_64
    switch (active_isa()) {
        case Isa::avx512: return sigmoid_span_avx512(x, y, s, e);
        case Isa::avx2: return sigmoid_span_avx2(x, y, s, e);
        case Isa::baseline: break;
    }
#endif
#pragma omp simd
    for (index_t i = s; i < e; ++i) y[i] = sigmoid_one(x[i]);
}
void sigmoid_span(const double* __restrict x, double* __restrict y, index_t s, index_t e) {
#pragma omp simd
    for (index_t i = s; i < e; ++i) y[i] = sigmoid_one(x[i]);
}
}  // namespace

template <typename T>
void sigmoid_forward(const T* __restrict x, T* __restrict y, index_t n) {
    chunked(n, 4, [=](index_t s, index_t e) { sigmoid_span(x, y, s, e); });
}

template <typename T>
void sigmoid_backward(const T* __restrict gy, const T* __restrict y, T* __restrict gx, index_t n) {
    chunked(n, 4, [=](index_t s, index_t e) {
#pragma omp simd
        for (index_t i = s; i < e; ++i) gx[i] = gy[i] * (y[i] * (T(1) - y[i]));
    });
}

template void sigmoid_forward<float>(const float*, float*, index_t);
template void sigmoid_forward<double>(const double*, double*, index_t);
template void sigmoid_backward<float>(const float*, const float*, float*, index_t);
template void sigmoid_backward<double>(const double*, const double*, double*, index_t);
template void relu_forward<float>(const float*, float*, index_t);
template void relu_forward<double>(const double*, double*, index_t);
template void relu_backward<float>(const float*, const float*, float*, index_t);
template void relu_backward<double>(const double*, const double*, double*, index_t);

}  // namespace pcn
