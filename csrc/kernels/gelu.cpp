// GELU and erf, one pass each way over contiguous chunks (core/parallel.h): a
// CIFAR-10 speedrun calls them on 60M-element activations, where a NumPy
// composition (x/sqrt2, erf, +1, *x, *0.5: five passes and temporaries) is
// memory-bound five times over.
//
// float erf without branches, so the loops vectorise (GCC if-converts the
// selects under -fno-trapping-math, see CMakeLists):
//   |x| < 0.875: erf(x) = x P(x^2), P of degree 6 (relative error 2e-10);
//   otherwise:   erfc(a) = t exp(-a^2 + Q(t)), t = 1/(1 + a/2), Q of degree 9
//                (the form of Numerical Recipes' erfcc, refitted on [0.875, 10]:
//                relative error 3e-9 before float rounding), erf = 1 - erfc.
// Both coefficient sets are least-squares fits in float64 of the exact function
// on a dense Chebyshev grid; the float result is within ~1e-7 of math.erf
// (tests/functional/test_gelu.py checks it at 10^6 points and the tails).
#include <cmath>
#include <cstdint>

#include "core/cpu.h"
#include "core/parallel.h"
#include "kernels/fastmath.h"
#include "kernels/gelu.h"

namespace pcn {

namespace {

// exp(x) for any x <= 0, flushed to 0 below -87.3 (NaN gives 0: callers select it away).
template <bool kFloor>
[[gnu::always_inline]] inline float exp_neg(float x) {
    const float c = x > -87.3f ? x : -87.3f;
    const float e = exp_nonpos<kFloor>(c < 0.0f ? c : 0.0f);
    return x > -87.3f ? e : 0.0f;
}

constexpr float kSmall = 0.875f;

// erf(z) / z for |z| < kSmall, in s = z^2
[[gnu::always_inline]] inline float erf_small(float s) {
    float p = 8.7134118082587975e-05f;
    p = p * s - 8.2203602267590103e-04f;
    p = p * s + 5.2076067403912657e-03f;
    p = p * s - 2.6861962091353747e-02f;
    p = p * s + 1.1283740840896050e-01f;
    p = p * s - 3.7612636721193843e-01f;
    return p * s + 1.1283791669964442e+00f;
}

// erfc(a) for a >= kSmall (NaN and a > 10 give 0)
template <bool kFloor>
[[gnu::always_inline]] inline float erfc_large(float a) {
    const float ac = a < 10.0f ? a : 10.0f;
    const float t = 1.0f / (1.0f + 0.5f * ac);
    float q = 0.21227397288164085f;
    q = q * t - 1.038228394878033f;
    q = q * t + 1.947947044256954f;
    q = q * t - 1.663457322868463f;
    q = q * t + 0.6419715610594644f;
    q = q * t - 0.34084446857537565f;
    q = q * t + 0.13739288435590005f;
    q = q * t + 0.36776053644290635f;
    q = q * t + 1.0005554372987915f;
    q = q * t - 1.2655307135380778f;
    const float ec = t * exp_neg<kFloor>(q - ac * ac);
    return a < 10.0f ? ec : 0.0f;
}

template <bool kFloor>
[[gnu::always_inline]] inline float erf_one(float x) {
    const float a = std::fabs(x);
    const float small = x * erf_small(x * x);
    const float one_minus = 1.0f - erfc_large<kFloor>(a);
    const float big = x < 0.0f ? -one_minus : one_minus;
    const float y = a < kSmall ? small : big;
    return x != x ? x : y;
}

// Phi(x) = (1 + erf(x / sqrt 2)) / 2; the negative tail straight from erfc (no 1 - 1 + tiny)
template <bool kFloor>
[[gnu::always_inline]] inline float phi_one(float x) {
    const float z = x * 0.70710678118654752f;
    const float a = std::fabs(z);
    const float small = 0.5f + 0.5f * (z * erf_small(z * z));
    const float half_ec = 0.5f * erfc_large<kFloor>(a);
    const float big = z > 0.0f ? 1.0f - half_ec : half_ec;
    return a < kSmall ? small : big;
}

// sigmoid(v) without overflow
template <bool kFloor>
[[gnu::always_inline]] inline float sigmoid_f(float v) {
    const float e = exp_neg<kFloor>(-std::fabs(v));
    const float inv = 1.0f / (1.0f + e);
    return v >= 0.0f ? inv : e * inv;
}

constexpr float kInvSqrt2Pi = 0.39894228040143268f;
// 2 sqrt(2/pi) and 2 sqrt(2/pi) * 0.044715: tanh(u) = 2 sigmoid(2u) - 1
constexpr float kT1 = 1.5957691216057308f, kT3 = 0.071354816273138f;

template <bool kFloor>
[[gnu::always_inline]] inline float gelu_one(float x, bool tanh_approx) {
    if (tanh_approx) return x * sigmoid_f<kFloor>(x * (kT1 + kT3 * (x * x)));
    return x * phi_one<kFloor>(x);
}

template <bool kFloor>
[[gnu::always_inline]] inline float gelu_grad_one(float x, bool tanh_approx) {
    if (tanh_approx) {
        const float v = x * (kT1 + kT3 * (x * x));
        const float e = exp_neg<kFloor>(-std::fabs(v));
        const float inv = 1.0f / (1.0f + e);
        const float s = v >= 0.0f ? inv : e * inv;
        const float ds = e * inv * inv;  // s (1 - s), exact in both tails
        const float g = s + (x * (kT1 + 3.0f * kT3 * (x * x))) * ds;
        // past |v| = 87.3, ds is 0 and x * (...) may be inf: the derivative is s
        const float y = std::fabs(v) < 87.3f ? g : s;
        return x != x ? x : y;
    }
    const float pdf = kInvSqrt2Pi * exp_neg<kFloor>(-0.5f * (x * x));
    const float term = std::fabs(x) < 13.3f ? x * pdf : 0.0f;  // phi(x) is 0 in float beyond
    const float y = phi_one<kFloor>(x) + term;
    return x != x ? x : y;
}

template <bool kFloor>
[[gnu::always_inline]] inline void erf_body(const float* __restrict x, float* __restrict y, index_t s, index_t e) {
#pragma omp simd
    for (index_t i = s; i < e; ++i) y[i] = erf_one<kFloor>(x[i]);
}
template <bool kFloor>
[[gnu::always_inline]] inline void erf_grad_body(const float* __restrict gy, const float* __restrict x,
                                                 float* __restrict gx, index_t s, index_t e) {
#pragma omp simd
    for (index_t i = s; i < e; ++i) gx[i] = gy[i] * (1.1283791670955126f * exp_neg<kFloor>(-(x[i] * x[i])));
}
// tanh_approx is hoisted out of the loops: two loops, each branch-free
template <bool kFloor>
[[gnu::always_inline]] inline void gelu_body(const float* __restrict x, float* __restrict y, index_t s, index_t e,
                                             bool tanh_approx) {
    if (tanh_approx) {
#pragma omp simd
        for (index_t i = s; i < e; ++i) y[i] = gelu_one<kFloor>(x[i], true);
    } else {
#pragma omp simd
        for (index_t i = s; i < e; ++i) y[i] = gelu_one<kFloor>(x[i], false);
    }
}
template <bool kFloor>
[[gnu::always_inline]] inline void gelu_grad_body(const float* __restrict gy, const float* __restrict x,
                                                  float* __restrict gx, index_t s, index_t e, bool tanh_approx) {
    if (tanh_approx) {
#pragma omp simd
        for (index_t i = s; i < e; ++i) gx[i] = gy[i] * gelu_grad_one<kFloor>(x[i], true);
    } else {
#pragma omp simd
        for (index_t i = s; i < e; ++i) gx[i] = gy[i] * gelu_grad_one<kFloor>(x[i], false);
    }
}

// ISA copies of the same bodies; the copy of the target in use runs (core/cpu.h: the wheel stays
// portable): AVX-512 (16 lanes), AVX2 + FMA (8 lanes) or the SSE2 loop (4 lanes, no FMA, ~2.5x
// slower). The tests run each target against the others; results may differ in the last bits
// (FMA contraction), never more.
#ifdef PCN_X86_64
#define PCN_COPIES(SUFFIX, TARGET)                                                                          \
    __attribute__((target(TARGET))) void erf_span_##SUFFIX(const float* x, float* y, index_t s, index_t e) { \
        erf_body<true>(x, y, s, e);                                                                         \
    }                                                                                                       \
    __attribute__((target(TARGET))) void erf_grad_span_##SUFFIX(const float* gy, const float* x, float* gx,  \
                                                                index_t s, index_t e) {                     \
        erf_grad_body<true>(gy, x, gx, s, e);                                                               \
    }                                                                                                       \
    __attribute__((target(TARGET))) void gelu_span_##SUFFIX(const float* x, float* y, index_t s, index_t e,  \
                                                            bool t) {                                       \
        gelu_body<true>(x, y, s, e, t);                                                                     \
    }                                                                                                       \
    __attribute__((target(TARGET))) void gelu_grad_span_##SUFFIX(const float* gy, const float* x, float* gx, \
                                                                 index_t s, index_t e, bool t) {            \
        gelu_grad_body<true>(gy, x, gx, s, e, t);                                                           \
    }
PCN_COPIES(avx512, "avx512f,fma")
PCN_COPIES(avx2, "avx2,fma")
#undef PCN_COPIES

#define PCN_DISPATCH(NAME, ...)                                                                              \
    switch (active_isa()) {                                                                                  \
        case Isa::avx512: return chunked(n, 4, [=](index_t s, index_t e) { NAME##_avx512(__VA_ARGS__); });   \
        case Isa::avx2: return chunked(n, 4, [=](index_t s, index_t e) { NAME##_avx2(__VA_ARGS__); });       \
        default: break;                                                                                      \
    }
#endif

}  // namespace

template <>
void erf_forward<float>(const float* x, float* y, index_t n) {
#ifdef PCN_X86_64
    PCN_DISPATCH(erf_span, x, y, s, e)
#endif
    chunked(n, 4, [=](index_t s, index_t e) { erf_body<false>(x, y, s, e); });
}
template <>
void erf_forward<double>(const double* __restrict x, double* __restrict y, index_t n) {
    chunked(n, 4, [=](index_t s, index_t e) {
        for (index_t i = s; i < e; ++i) y[i] = std::erf(x[i]);
    });
}
template <>
void erf_backward<float>(const float* gy, const float* x, float* gx, index_t n) {
#ifdef PCN_X86_64
    PCN_DISPATCH(erf_grad_span, gy, x, gx, s, e)
#endif
    chunked(n, 4, [=](index_t s, index_t e) { erf_grad_body<false>(gy, x, gx, s, e); });
}
template <>
void erf_backward<double>(const double* __restrict gy, const double* __restrict x, double* __restrict gx, index_t n) {
    chunked(n, 4, [=](index_t s, index_t e) {
        for (index_t i = s; i < e; ++i) gx[i] = gy[i] * (1.1283791670955126 * std::exp(-x[i] * x[i]));
    });
}

template <>
void gelu_forward<float>(const float* x, float* y, index_t n, bool tanh_approx) {
#ifdef PCN_X86_64
    PCN_DISPATCH(gelu_span, x, y, s, e, tanh_approx)
#endif
    chunked(n, 4, [=](index_t s, index_t e) { gelu_body<false>(x, y, s, e, tanh_approx); });
}
template <>
void gelu_backward<float>(const float* gy, const float* x, float* gx, index_t n, bool tanh_approx) {
#ifdef PCN_X86_64
    PCN_DISPATCH(gelu_grad_span, gy, x, gx, s, e, tanh_approx)
#endif
    chunked(n, 4, [=](index_t s, index_t e) { gelu_grad_body<false>(gy, x, gx, s, e, tanh_approx); });
}

namespace {
inline double phi_d(double x) { return 0.5 * std::erfc(-x * 0.70710678118654752); }
inline double sigmoid_d(double v) {
    const double e = std::exp(-std::fabs(v));
    return v >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}
constexpr double kT1d = 1.5957691216057308, kT3d = 0.0713548162726008;  // 2 sqrt(2/pi) (1, 0.044715)
}  // namespace

template <>
void gelu_forward<double>(const double* __restrict x, double* __restrict y, index_t n, bool tanh_approx) {
    chunked(n, 4, [=](index_t s, index_t e) {
        if (tanh_approx) {
            for (index_t i = s; i < e; ++i) y[i] = x[i] * sigmoid_d(x[i] * (kT1d + kT3d * x[i] * x[i]));
        } else {
            for (index_t i = s; i < e; ++i) y[i] = x[i] * phi_d(x[i]);
        }
    });
}
template <>
void gelu_backward<double>(const double* __restrict gy, const double* __restrict x, double* __restrict gx, index_t n,
                           bool tanh_approx) {
    chunked(n, 4, [=](index_t s, index_t e) {
        for (index_t i = s; i < e; ++i) {
            const double v = x[i];
            double d;
            if (tanh_approx) {
                const double u = v * (kT1d + kT3d * v * v);
                const double sg = sigmoid_d(u);
                const double ds = std::fabs(u) < 700.0 ? sg * (1.0 - sg) : 0.0;
                d = ds == 0.0 ? sg : sg + v * (kT1d + 3.0 * kT3d * v * v) * ds;
            } else {
                const double pdf = 0.39894228040143268 * std::exp(-0.5 * v * v);
                d = phi_d(v) + (pdf == 0.0 ? 0.0 : v * pdf);
            }
            gx[i] = gy[i] * (v != v ? v : d);
        }
    });
}

}  // namespace pcn
