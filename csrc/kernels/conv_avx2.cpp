// The convolution kernels' AVX2 copy (AVX2 + FMA; 16 ymm registers). The bodies
// are kernels/conv_direct_body.h and kernels/winograd_body.h; only the vector type
// and the register blocking are this target's.
#include "kernels/conv_isa.h"

#ifdef PCN_X86_64
#include <immintrin.h>
// Target region opened after every header: only the code below is AVX2, so no
// inline function of a shared header is ever compiled for it (per-file -m flags
// would risk the linker keeping an AVX2 copy of, say, std::fill for everyone).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif

namespace pcn::avx2 {

#define PCN_SIMD_AVX2
#include "core/simd.h"
#undef PCN_SIMD_AVX2

// 16 registers: 12 accumulators (6 x 2 or 4 x 3) + the row loads + a broadcast,
// enough independent sums for 2 FMAs a cycle at 4-5 cycles of latency (Zen 2/3,
// Haswell and later); 8 x 1 covers remainders at ~80% (8 sums). Relative rates.
constexpr TileShape kTiles[3] = {{6, 2, 1.0}, {4, 3, 1.0}, {8, 1, 0.8}};
// Weight gradient: taps per tile for OV = 1..4 vectors of channels (<= 13 accumulators
// with the OV gradient loads); few-tap form: up to 4 channels, taps per tile for OT = 1..4.
constexpr int kWgKT[5] = {0, 12, 6, 4, 2};
// Channel-vector forward: pixels per tile for OV = 1, 2 vectors of channels.
constexpr int kCvNP[3] = {0, 12, 6};
constexpr int kWgpOT = 4;
constexpr int kWgpKT[5] = {0, 12, 5, 3, 2};

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

}  // namespace pcn::avx2

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else  // not x86-64 GCC/Clang: this copy is never chosen (isa_built)

namespace pcn::avx2 {
bool forward(const float*, const float*, const float*, float*, const ConvArgs&) { return false; }
bool backward_data(const float*, const float*, float*, const ConvArgs&) { return false; }
bool backward_weight(const float*, const float*, float*, const ConvArgs&) { return false; }
void wino_forward(int, const float*, index_t, index_t, index_t, index_t, index_t, index_t, const float*, index_t,
                  const float*, float*, index_t, index_t) {}
void wino_backward(int, const float*, const float*, index_t, index_t, index_t, index_t, index_t, index_t, index_t,
                   index_t, index_t, const float*, float*, float*, const WinoBackPlan&, double*) {}
}  // namespace pcn::avx2

#endif
