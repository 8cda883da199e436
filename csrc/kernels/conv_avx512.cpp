// The convolution kernels' AVX-512 copy (AVX-512F + FMA; 32 zmm registers). The bodies
// are kernels/conv_direct_body.h and kernels/winograd_body.h; only the vector type
// and the register blocking are this target's.
#include "kernels/conv_isa.h"

#ifdef PCN_X86_64
#include <immintrin.h>
// GCC 12's AVX-512 headers build results from _mm512_undefined_ps(), which
// -Wmaybe-uninitialized reports from every caller (a known false positive).
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

// Target region opened after every header: only the code below is AVX-512, so no
// inline function of a shared header is ever compiled for it (per-file -m flags
// would risk the linker keeping an AVX-512 copy of, say, std::fill for everyone).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma")
#endif

namespace pcn::avx512 {

#define PCN_SIMD_AVX512
#include "core/simd.h"
#undef PCN_SIMD_AVX512

// 14 or 12 channels x 2 vectors are the fastest (~10% over 8 x 3 on large convs);
// rates in GFLOP/s on full tiles, 1 thread, on a Xeon.
constexpr TileShape kTiles[3] = {{14, 2, 186.0}, {12, 2, 175.0}, {8, 3, 165.0}};
// Weight gradient: taps per tile for OV = 1..4 vectors of channels; few-tap form:
// up to kWgpOT channels, taps per tile for OT = 1..8.
constexpr int kWgKT[5] = {0, 12, 12, 8, 6};
// Channel-vector forward: pixels per tile for OV = 1, 2 vectors of channels.
constexpr int kCvNP[3] = {0, 24, 12};
constexpr int kWgpOT = 8;
constexpr int kWgpKT[9] = {0, 12, 12, 8, 6, 4, 4, 3, 3};

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

}  // namespace pcn::avx512

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#else  // not x86-64 GCC/Clang: this copy is never chosen (isa_built)

namespace pcn::avx512 {
bool forward(const float*, const float*, const float*, float*, const ConvArgs&) { return false; }
bool backward_data(const float*, const float*, float*, const ConvArgs&) { return false; }
bool backward_weight(const float*, const float*, float*, const ConvArgs&) { return false; }
void wino_forward(int, const float*, index_t, index_t, index_t, index_t, index_t, index_t, const float*, index_t,
                  const float*, float*, index_t, index_t) {}
void wino_backward(int, const float*, const float*, index_t, index_t, index_t, index_t, index_t, index_t, index_t,
                   index_t, index_t, const float*, float*, float*, const WinoBackPlan&, double*) {}
}  // namespace pcn::avx512

#endif
