// Batch norm: one channel per loop iteration (a channel's values are N strided
// runs of S), sums in double so float inputs keep their precision.
#include <cmath>
#include "core/blas.h"
#include "core/parallel.h"
#include "kernels/batchnorm.h"

namespace pcn {

template <typename T>
void batch_norm_forward_train(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* var, T* invstd, index_t N,
                              index_t C, index_t S, double eps) {
    const double M = double(N) * S;
#pragma omp parallel for schedule(static) if (N * C * S > 32768)
    for (index_t c = 0; c < C; ++c) {
        double s = 0;
        for (index_t n = 0; n < N; ++n) {
            const T* p = x + (n * C + c) * S;
            double part = 0;
#pragma omp simd reduction(+ : part)
            for (index_t i = 0; i < S; ++i) part += p[i];
            s += part;
        }
        const double mu = s / M;
        double v = 0;  // two-pass variance: no catastrophic cancellation
        for (index_t n = 0; n < N; ++n) {
            const T* p = x + (n * C + c) * S;
            double part = 0;
#pragma omp simd reduction(+ : part)
            for (index_t i = 0; i < S; ++i) {
                const double d = p[i] - mu;
                part += d * d;
            }
            v += part;
        }
        const double is = 1.0 / std::sqrt(v / M + eps);
        mean[c] = T(mu);
        var[c] = T(v / M);
        invstd[c] = T(is);
        const T scale = T((gamma ? double(gamma[c]) : 1.0) * is);
        const T shift = T((beta ? double(beta[c]) : 0.0) - mu * (gamma ? double(gamma[c]) : 1.0) * is);
        for (index_t n = 0; n < N; ++n) {
            const T* p = x + (n * C + c) * S;
            T* q = y + (n * C + c) * S;
#pragma omp simd
            for (index_t i = 0; i < S; ++i) q[i] = p[i] * scale + shift;
        }
    }
}

template <typename T>
void batch_norm_forward_eval(const T* x, const T* mean, const T* var, const T* gamma, const T* beta, T* y, index_t N,
                             index_t C, index_t S, double eps) {
#pragma omp parallel for schedule(static) if (N * C * S > 32768)
    for (index_t nc = 0; nc < N * C; ++nc) {
        const index_t c = nc % C;
        const double is = 1.0 / std::sqrt(double(var[c]) + eps);
        const double g = gamma ? double(gamma[c]) : 1.0;
        const T scale = T(g * is);
        const T shift = T((beta ? double(beta[c]) : 0.0) - double(mean[c]) * g * is);
        const T* p = x + nc * S;
        T* q = y + nc * S;
#pragma omp simd
        for (index_t i = 0; i < S; ++i) q[i] = p[i] * scale + shift;
    }
}

template <typename T>
void batch_norm_backward(const T* gy, const T* x, const T* gamma, const T* mean, const T* invstd, T* gx, T* ggamma,
                         T* gbeta, index_t N, index_t C, index_t S) {
    const double M = double(N) * S;
#pragma omp parallel for schedule(static) if (N * C * S > 32768)
    for (index_t c = 0; c < C; ++c) {
        const double mu = mean[c], is = invstd[c];
        double sdy = 0, sdyx = 0;  // sum dy, sum dy*xhat
        for (index_t n = 0; n < N; ++n) {
            const T* g = gy + (n * C + c) * S;
            const T* p = x + (n * C + c) * S;
            double a = 0, b = 0;
#pragma omp simd reduction(+ : a, b)
            for (index_t i = 0; i < S; ++i) {
                a += g[i];
                b += double(g[i]) * (p[i] - mu);
            }
            sdy += a;
            sdyx += b;
        }
        sdyx *= is;
        gbeta[c] = T(sdy);
        ggamma[c] = T(sdyx);
        // dx = gamma*invstd/M * (M*dy - sum(dy) - xhat*sum(dy*xhat))   (eqs. 32-37 combined)
        const double g = gamma ? double(gamma[c]) : 1.0;
        const T k = T(g * is);
        const T mdy = T(sdy / M);
        const T cx = T(sdyx / M * is);  // multiplies (x - mu)
        const T tmu = T(mu);
        for (index_t n = 0; n < N; ++n) {
            const T* gg = gy + (n * C + c) * S;
            const T* p = x + (n * C + c) * S;
            T* q = gx + (n * C + c) * S;
#pragma omp simd
            for (index_t i = 0; i < S; ++i) q[i] = k * (gg[i] - mdy - (p[i] - tmu) * cx);
        }
    }
}

#define PCN_INST(T)                                                                                               \
    template void batch_norm_forward_train<T>(const T*, const T*, const T*, T*, T*, T*, T*, index_t, index_t, index_t, \
                                              double);                                                            \
    template void batch_norm_forward_eval<T>(const T*, const T*, const T*, const T*, const T*, T*, index_t,       \
                                             index_t, index_t, double);                                           \
    template void batch_norm_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, index_t,   \
                                         index_t, index_t);
PCN_INST(float)
PCN_INST(double)
#undef PCN_INST

}  // namespace pcn
