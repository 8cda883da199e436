// What the instruction-set copies of the convolution kernels (conv_<isa>.cpp: the
// direct convolution and Winograd's transforms) include before they open their
// target region: every standard header the bodies use, and the library's own
// declarations. Nothing here is compiled for a target: inline functions defined here
// are ordinary code, whichever copy calls them.
#pragma once
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/blas.h"
#include "core/cpu.h"
#include "core/parallel.h"
#include "kernels/conv.h"

namespace pcn {

// A tile of the forward/data-gradient micro-kernel: MR output channels x NV vectors,
// and its relative speed for the block-cover cost model.
struct TileShape {
    int mr, nv;
    double rate;
};

// Vector lanes of a target (floats per register).
constexpr int isa_lanes(Isa isa) { return isa == Isa::avx512 ? 16 : isa == Isa::avx2 ? 8 : 4; }

// Where cv_sweep (the channel-vector micro-kernel) reads entry (k, o) of a (K, Wd)
// weight matrix: columns in panels of two vectors (the last one vector wide when Wd
// is an odd number of vectors), each panel its K rows of its width, contiguous.
// Rows Wd floats apart (1 KiB at 256 channels) fell into 4 of L1's 64 sets, so a
// panel's rows evicted each other between tiles (43% of cv_tile's time on that load).
inline index_t panel_index(index_t k, index_t o, index_t K, index_t Wd, index_t lanes) {
    const index_t pw = 2 * lanes, o0 = o / pw * pw, width = std::min(pw, Wd - o0);
    return o0 * K + k * width + (o - o0);
}

// Tiles per Winograd block: the block's transformed inputs and products
// (A2 (Cp + Op) Tb floats) about 2 MiB, a multiple of 16, 32..256 (the GEMMs' M or K).
inline index_t wino_block_tiles(int A2, index_t Cp, index_t Op) {
    const index_t fit = (index_t(1) << 19) / (index_t(A2) * (Cp + Op));
    return std::max<index_t>(32, std::min<index_t>(256, fit / 16 * 16));
}

// The entry points of each target's copy. Direct: same contract as conv_direct.h.
// Winograd (winograd.h has the algorithm): U (A2, Cp, Op) the transformed kernel with
// its channels padded to the target's lanes, each tap's (Cp, Op) in panel_index order; dU (parts, A2, Op, Cp) the weight
// gradient's transformed partial sums, Ud the data gradient's transformed kernel
// (winograd.cpp makes the kernels and finishes dU); gx or dU null: not wanted.
#define PCN_ISA_DECLARE(ns)                                                                                        \
    namespace ns {                                                                                                 \
    bool forward(const float* x, const float* w, const float* bias, float* y, const ConvArgs& a);                   \
    bool backward_data(const float* gy, const float* w, float* gx, const ConvArgs& a);                             \
    bool backward_weight(const float* gy, const float* x, float* gw, const ConvArgs& a);                           \
    void wino_forward(int m, const float* x, index_t N, index_t C, index_t H, index_t W, index_t pt, index_t pl,   \
                      const float* U, index_t O, const float* bias, float* y, index_t OH, index_t OW);            \
    void wino_backward(int m, const float* gy, const float* x, index_t N, index_t C, index_t H, index_t W,         \
                       index_t pt, index_t pl, index_t O, index_t OH, index_t OW, const float* Ud, float* gx,      \
                       float* dU, index_t parts, index_t Tb);                                                      \
    }
PCN_ISA_DECLARE(baseline)
PCN_ISA_DECLARE(avx2)
PCN_ISA_DECLARE(avx512)
#undef PCN_ISA_DECLARE

}  // namespace pcn
