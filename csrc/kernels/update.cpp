// Fused optimizer steps: see update.h.
#include <algorithm>
#include <cmath>
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#endif
#include "core/parallel.h"
#include "kernels/update.h"

namespace pcn {

namespace {

// Denormals flushed to zero (and read as zero) while a step runs, on whichever thread
// runs it; the caller's floating-point mode is restored after. Optimizer state that
// decays towards zero (Adam's and momentum's averages of gradients that stopped)
// spends many steps below 1.2e-38, and each denormal operand costs a ~100-cycle
// microcode assist: a trained Keras CNN's Adam step took 22 ms instead of 1 ms.
struct FlushDenormals {
#if defined(__SSE__) || defined(__x86_64__)
    unsigned saved = _mm_getcsr();
    FlushDenormals() { _mm_setcsr(saved | 0x8040u); }  // FTZ | DAZ
    ~FlushDenormals() { _mm_setcsr(saved); }
#endif
};

// f(s, e) over [0, n) in chunks with denormals flushed, across threads above 1M
// elements (where the pass is memory-bound and a second core adds bandwidth). The
// loops live in span functions: under a combined "parallel for simd" with an if
// clause GCC left AdaDelta and Adam scalar (sqrt and division one lane at a time:
// 2.7 ms for 1.6M floats, twice the memory-bound time).
template <typename F>
void flushed_chunks(index_t n, F&& f) {
    chunked(n, (index_t(1) << 20) / kChunk, [&](index_t s, index_t e) {
        FlushDenormals ftz;
        f(s, e);
    });
}

template <bool kDecay, typename T>
void sgd_span(T* __restrict p, const T* __restrict g, T lr, T wd, index_t b, index_t e) {
#pragma omp simd
    for (index_t i = b; i < e; ++i) p[i] -= (kDecay ? p[i] * wd + g[i] : g[i]) * lr;
}

template <bool kDecay, typename T>
void momentum_span(T* __restrict p, const T* __restrict g, T* __restrict v, T lr, T momentum, T wd, index_t b,
                   index_t e) {
#pragma omp simd
    for (index_t i = b; i < e; ++i) {
        const T vi = v[i] * momentum - (kDecay ? p[i] * wd + g[i] : g[i]) * lr;
        v[i] = vi;
        p[i] += vi;
    }
}

template <bool kDecay, bool kScale, typename T>
void adadelta_span(T* __restrict p, const T* __restrict g0, T* __restrict h, T* __restrict s, T r, T omr, T e, T l,
                   T w, index_t b, index_t end) {
#pragma omp simd
    for (index_t i = b; i < end; ++i) {
        const T g = kDecay ? p[i] * w + g0[i] : g0[i];
        const T hi = h[i] * r + (g * g) * omr;
        h[i] = hi;
        T d = std::sqrt((s[i] + e) / (hi + e)) * g;
        s[i] = s[i] * r + (d * d) * omr;
        if (kScale) d = d * l;
        p[i] -= d;
    }
}

template <bool kDecay, typename T>
void adam_span(T* __restrict p, const T* __restrict g0, T* __restrict m, T* __restrict v, T B1, T OB1, T B2, T OB2,
               T e, T C2, T S, T w, index_t b, index_t end) {
#pragma omp simd
    for (index_t i = b; i < end; ++i) {
        const T g = kDecay ? p[i] * w + g0[i] : g0[i];
        const T mi = m[i] * B1 + g * OB1;
        const T vi = v[i] * B2 + (g * g) * OB2;
        m[i] = mi;
        v[i] = vi;
        p[i] -= (mi / (std::sqrt(vi / C2) + e)) * S;
    }
}
}  // namespace

template <typename T>
void sgd_step(T* __restrict p, const T* __restrict g, T lr, T wd, index_t n) {
    flushed_chunks(n, [=](index_t b, index_t e) {
        if (wd != T(0)) sgd_span<true>(p, g, lr, wd, b, e);
        else sgd_span<false>(p, g, lr, wd, b, e);
    });
}

template <typename T>
void momentum_step(T* __restrict p, const T* __restrict g, T* __restrict v, T lr, T momentum, T wd, index_t n) {
    flushed_chunks(n, [=](index_t b, index_t e) {
        if (wd != T(0)) momentum_span<true>(p, g, v, lr, momentum, wd, b, e);
        else momentum_span<false>(p, g, v, lr, momentum, wd, b, e);
    });
}

// The scalars are cast to T exactly as NumPy casts a Python float operand.
template <typename T>
void adadelta_step(T* __restrict p, const T* __restrict g0, T* __restrict h, T* __restrict s, double lr, double rho,
                   double eps, double wd, index_t n) {
    const T r = T(rho), omr = T(1.0 - rho), e = T(eps), l = T(lr), w = T(wd);
    const bool decay = wd != 0.0, scale = lr != 1.0;
    flushed_chunks(n, [=](index_t b, index_t end) {
        if (decay && scale) adadelta_span<true, true>(p, g0, h, s, r, omr, e, l, w, b, end);
        else if (decay) adadelta_span<true, false>(p, g0, h, s, r, omr, e, l, w, b, end);
        else if (scale) adadelta_span<false, true>(p, g0, h, s, r, omr, e, l, w, b, end);
        else adadelta_span<false, false>(p, g0, h, s, r, omr, e, l, w, b, end);
    });
}

template <typename T>
void adam_step(T* __restrict p, const T* __restrict g0, T* __restrict m, T* __restrict v, double b1, double b2,
               double eps, double c2, double step, double wd, index_t n) {
    const T B1 = T(b1), OB1 = T(1.0 - b1), B2 = T(b2), OB2 = T(1.0 - b2), e = T(eps), C2 = T(c2), S = T(step),
            w = T(wd);
    const bool decay = wd != 0.0;
    flushed_chunks(n, [=](index_t b, index_t end) {
        if (decay) adam_span<true>(p, g0, m, v, B1, OB1, B2, OB2, e, C2, S, w, b, end);
        else adam_span<false>(p, g0, m, v, B1, OB1, B2, OB2, e, C2, S, w, b, end);
    });
}

template void adadelta_step<float>(float*, const float*, float*, float*, double, double, double, double, index_t);
template void adadelta_step<double>(double*, const double*, double*, double*, double, double, double, double, index_t);
template void adam_step<float>(float*, const float*, float*, float*, double, double, double, double, double, double,
                               index_t);
template void adam_step<double>(double*, const double*, double*, double*, double, double, double, double, double,
                                double, index_t);
template void sgd_step<float>(float*, const float*, float, float, index_t);
template void sgd_step<double>(double*, const double*, double, double, index_t);
template void momentum_step<float>(float*, const float*, float*, float, float, float, index_t);
template void momentum_step<double>(double*, const double*, double*, double, double, double, index_t);

}  // namespace pcn
