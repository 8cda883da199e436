// Fused optimizer steps: see update.h. Parallel only for large tensors, where
// the pass is memory-bound and a second core adds bandwidth.
#include "update.h"

namespace pcn {

template <typename T>
void sgd_step(T* __restrict p, const T* __restrict g, T lr, T wd, index_t n) {
    if (wd != T(0)) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 20))
        for (index_t i = 0; i < n; ++i) p[i] -= (p[i] * wd + g[i]) * lr;
    } else {
#pragma omp parallel for simd schedule(static) if (n > (1 << 20))
        for (index_t i = 0; i < n; ++i) p[i] -= g[i] * lr;
    }
}

template <typename T>
void momentum_step(T* __restrict p, const T* __restrict g, T* __restrict v, T lr, T momentum, T wd, index_t n) {
    if (wd != T(0)) {
#pragma omp parallel for simd schedule(static) if (n > (1 << 20))
        for (index_t i = 0; i < n; ++i) {
            const T vi = v[i] * momentum - (p[i] * wd + g[i]) * lr;
            v[i] = vi;
            p[i] += vi;
        }
    } else {
#pragma omp parallel for simd schedule(static) if (n > (1 << 20))
        for (index_t i = 0; i < n; ++i) {
            const T vi = v[i] * momentum - g[i] * lr;
            v[i] = vi;
            p[i] += vi;
        }
    }
}

template void sgd_step<float>(float*, const float*, float, float, index_t);
template void sgd_step<double>(double*, const double*, double, double, index_t);
template void momentum_step<float>(float*, const float*, float*, float, float, float, index_t);
template void momentum_step<double>(double*, const double*, double*, double, double, double, index_t);

}  // namespace pcn
