// The convolution kernels' portable copy: 4-lane GCC vector extensions, which
// compile to SSE2 on x86-64 and to NEON on ARM. The bodies are kernels/conv_direct_body.h and winograd_body.h.
#include "kernels/conv_isa.h"

namespace pcn::baseline {

#include "core/simd.h"

// 16 registers and no FMA (a multiply and an add, one temporary): 12 or 8 sums.
constexpr TileShape kTiles[3] = {{6, 2, 1.0}, {4, 2, 0.9}, {8, 1, 0.8}};
constexpr int kWgKT[5] = {0, 10, 5, 3, 2};
// Channel-vector forward: pixels per tile for OV = 1, 2 vectors of channels.
constexpr int kCvNP[3] = {0, 10, 5};
constexpr int kWgpOT = 4;
constexpr int kWgpKT[5] = {0, 10, 5, 3, 2};

namespace {
#include "kernels/conv_direct_body.h"
#include "kernels/winograd_transforms.h"
#include "kernels/winograd_body.h"
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
void wino_forward(int m, const float* x, index_t N, index_t C, index_t H, index_t W, index_t pt, index_t pl,
                  const float* U, index_t O, const float* bias, float* y, index_t OH, index_t OW) {
    if (m == 4)
        wg_forward<4>(x, N, C, H, W, pt, pl, U, O, bias, y, OH, OW);
    else
        wg_forward<2>(x, N, C, H, W, pt, pl, U, O, bias, y, OH, OW);
}
void wino_backward(int m, const float* gy, const float* x, index_t N, index_t C, index_t H, index_t W, index_t pt,
                   index_t pl, index_t O, index_t OH, index_t OW, const float* Ud, float* gx, float* dU,
                   const WinoBackPlan& plan, double* gb) {
    if (m == 4)
        wg_backward<4>(gy, x, N, C, H, W, pt, pl, O, OH, OW, Ud, gx, dU, plan, gb);
    else
        wg_backward<2>(gy, x, N, C, H, W, pt, pl, O, OH, OW, Ud, gx, dU, plan, gb);
}

}  // namespace pcn::baseline
