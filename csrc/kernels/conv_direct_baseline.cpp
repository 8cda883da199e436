// The direct convolution's portable copy: 4-lane GCC vector extensions, which
// compile to SSE2 on x86-64 and to NEON on ARM. The body is kernels/conv_direct_body.h.
#include "kernels/conv_direct_impl.h"

namespace pcn::baseline {

#include "core/simd.h"

// 16 registers and no FMA (a multiply and an add, one temporary): 12 or 8 sums.
constexpr TileShape kTiles[3] = {{6, 2, 1.0}, {4, 2, 0.9}, {8, 1, 0.8}};
constexpr int kWgKT[5] = {0, 10, 5, 3, 2};
constexpr int kWgpOT = 4;
constexpr int kWgpKT[5] = {0, 10, 5, 3, 2};

namespace {
#include "kernels/conv_direct_body.h"
}  // namespace

bool forward(const float* x, const float* w, const float* b, float* y, const ConvArgs& a) {
    return forward_impl(x, w, b, y, a);
}
bool backward_data(const float* gy, const float* w, float* gx, const ConvArgs& a) {
    return backward_data_impl(gy, w, gx, a);
}
bool backward_weight(const float* gy, const float* x, float* gw, const ConvArgs& a) {
    return backward_weight_impl(gy, x, gw, a);
}

}  // namespace pcn::baseline
