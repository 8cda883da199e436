// Linear layer as GEMMs split over our threads (the BLAS itself stays single-threaded).
#include "core/blas.h"
#include "core/parallel.h"
#include "kernels/linear.h"
#include "kernels/conv.h"

namespace pcn {

template <typename T>
void linear_forward(const T* x, const T* w, const T* b, T* y, index_t N, index_t in, index_t out) {
    gemm<T>(false, true, N, out, in, T(1), x, in, w, in, T(0), y, out, true);
    if (b) add_channel_bias(y, b, N, out, 1);
}

template <typename T>
void linear_backward(const T* gy, const T* x, const T* w, T* gx, T* gw, T* gb, index_t N, index_t in, index_t out) {
    if (gx) gemm<T>(false, false, N, in, out, T(1), gy, out, w, in, T(0), gx, in, true);
    if (gw) gemm<T>(true, false, out, in, N, T(1), gy, out, x, in, T(0), gw, in, true);
    if (gb) channel_sum(gy, gb, N, out, 1);
}

template void linear_forward<float>(const float*, const float*, const float*, float*, index_t, index_t, index_t);
template void linear_forward<double>(const double*, const double*, const double*, double*, index_t, index_t, index_t);
template void linear_backward<float>(const float*, const float*, const float*, float*, float*, float*, index_t,
                                     index_t, index_t);
template void linear_backward<double>(const double*, const double*, const double*, double*, double*, double*,
                                      index_t, index_t, index_t);

}  // namespace pcn
