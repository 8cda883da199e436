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

// Samples per Winograd chunk taken through every stage by one thread: the chunk's
// copies (per floats a sample) about 1 MiB, so they stay in one core's L2, then as
// few as give the nt threads equal shares (the fewest samples on the busiest thread).
inline index_t wino_chunk_samples(index_t N, index_t per, index_t nt) {
    const index_t smax = std::max<index_t>(1, std::min<index_t>(N, (index_t(1) << 18) / std::max<index_t>(1, per)));
    index_t best = smax, load = N;
    for (index_t s = smax; s >= 1; --s) {
        const index_t chunks = (N + s - 1) / s, l = (chunks + nt - 1) / nt * s;
        if (l < load) best = s, load = l;
    }
    return best;
}
// Samples per chunk when the threads split each stage instead (few, large samples):
// the chunk's copies about 16 MiB.
inline index_t wino_big_chunk_samples(index_t N, index_t per) {
    return std::max<index_t>(1, std::min<index_t>(N, (index_t(1) << 22) / std::max<index_t>(1, per)));
}

// How the Winograd backward pass cuts the batch, the same for every thread count (so
// the weight gradient's sums are) and for winograd.cpp, which sizes dU's parts by it.
// gy's copy (GH x GW, gy at gt, gl) is padded by 2 - p for the data gradient's windows
// (no gx: by nothing, as p may exceed 2 then) and far enough for the weight gradient's
// whole tiles; x's (Hp x Wp) as the forward pass's; xs floats a sample hold x's copy or
// gx's channel-last result. by_chunk: chunks of S samples (at least 4 of them, about
// 1 MiB each), part p summing its fixed range of chunks; otherwise chunks of up to
// 16 MiB one at a time, parts over blocks of Tb tiles.
struct WinoBackPlan {
    index_t gt, gl, GH, GW, Hp, Wp, xs, S, Tb, parts;
    bool by_chunk;
};
inline WinoBackPlan wino_backward_plan(int m, index_t N, index_t H, index_t W, index_t pt, index_t pl, index_t OH,
                                       index_t OW, index_t Cp, index_t Op, bool want_gx, bool want_gw) {
    WinoBackPlan p{};
    const index_t th = (OH + m - 1) / m, tw = (OW + m - 1) / m, dth = (H + m - 1) / m, dtw = (W + m - 1) / m;
    const int A2 = (m + 2) * (m + 2);
    p.gt = want_gx ? 2 - pt : 0;
    p.gl = want_gx ? 2 - pl : 0;
    p.GH = std::max(want_gx ? dth * m + 2 : 0, p.gt + th * m);
    p.GW = std::max(want_gx ? dtw * m + 2 : 0, p.gl + tw * m);
    p.Hp = th * m + 2;
    p.Wp = tw * m + 2;
    p.xs = std::max(want_gw ? p.Hp * p.Wp * Cp : 0, want_gx ? H * W * Cp : 0);
    p.Tb = wino_block_tiles(A2, Cp, Op);
    const index_t per = p.GH * p.GW * Op + p.xs, UO = index_t(A2) * Op * Cp;
    const index_t small = std::max<index_t>(
        1, std::min<index_t>((index_t(1) << 18) / std::max<index_t>(1, per), (N + kSumChunks - 1) / kSumChunks));
    const index_t chunks = (N + small - 1) / small;
    p.by_chunk = chunks >= 4;
    if (p.by_chunk) {
        p.S = small;
        p.parts = want_gw ? sum_chunks(chunks, UO) : std::min<index_t>(chunks, kSumChunks);
    } else {
        p.S = wino_big_chunk_samples(N, per);
        p.parts = want_gw ? sum_chunks((N * th * tw + p.Tb - 1) / p.Tb, UO) : 1;
    }
    return p;
}

// The entry points of each target's copy. Direct: same contract as conv_direct.h.
// Winograd (winograd.h has the algorithm): U (A2, Cp, Op) the transformed kernel with
// its channels padded to the target's lanes, each tap's (Cp, Op) in panel_index order; dU (parts, A2, Op, Cp) the weight
// gradient's transformed partial sums, Ud the data gradient's transformed kernel
// (winograd.cpp makes the kernels and finishes dU), gb (O) the bias gradient's double
// sums, added to; gx, dU or gb null: not wanted.
#define PCN_ISA_DECLARE(ns)                                                                                        \
    namespace ns {                                                                                                 \
    bool forward(const float* x, const float* w, const float* bias, float* y, const ConvArgs& a);                   \
    bool backward_data(const float* gy, const float* w, float* gx, const ConvArgs& a);                             \
    bool backward_weight(const float* gy, const float* x, float* gw, const ConvArgs& a);                           \
    void wino_forward(int m, const float* x, index_t N, index_t C, index_t H, index_t W, index_t pt, index_t pl,   \
                      const float* U, index_t O, const float* bias, float* y, index_t OH, index_t OW);            \
    void wino_backward(int m, const float* gy, const float* x, index_t N, index_t C, index_t H, index_t W,         \
                       index_t pt, index_t pl, index_t O, index_t OH, index_t OW, const float* Ud, float* gx,      \
                       float* dU, const WinoBackPlan& plan, double* gb);                                           \
    }
PCN_ISA_DECLARE(baseline)
PCN_ISA_DECLARE(avx2)
PCN_ISA_DECLARE(avx512)
#undef PCN_ISA_DECLARE

}  // namespace pcn
