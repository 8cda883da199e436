// Convolution = im2col + GEMM over blocks of samples. Small images (LeNet's
// 10x10 or 1x1 outputs) give GEMMs too thin for BLAS to run well, so a block
// puts several samples' columns side by side: one (Og x K) @ (K x nb*L) GEMM.
// Blocks are spread over the OpenMP threads when there are enough of them;
// otherwise each block's im2col and GEMM are split across threads instead.
#include <algorithm>
#include <cstring>
#include <vector>
#include <type_traits>
#include "core/blas.h"
#include "core/parallel.h"
#include "kernels/conv.h"
#include "kernels/conv_direct.h"
#include "kernels/winograd.h"

namespace pcn {

namespace {
// Columns per GEMM we aim for; past this, wider blocks buy little.
constexpr index_t kTargetCols = 256;
constexpr index_t kWeightGradCols = 1024;

struct Plan {
    index_t Cg, Og, K, L, HW;
    index_t nb, nblocks;  // samples per block, number of blocks
    bool across;          // blocks in parallel (else parallel inside a block)
    bool serial;          // too little work for threads
    Geom gg;              // per-group geometry
    explicit Plan(const ConvArgs& a, index_t target_cols = kTargetCols) {
        Cg = a.g.C / a.groups;
        Og = a.O / a.groups;
        K = Cg * a.g.kh * a.g.kw;
        L = a.g.OH * a.g.OW;
        HW = a.g.H * a.g.W;
        gg = a.g;
        gg.C = Cg;
        const index_t N = std::max<index_t>(a.N, 1), nt = max_threads();
        nb = std::min(N, std::max<index_t>(1, target_cols / std::max<index_t>(L, 1)));
        nblocks = (N + nb - 1) / nb;
        // Balance for 2 and 4 threads: a multiple of 4 blocks. The blocks set the GEMMs'
        // shapes, and OpenBLAS's bits depend on a call's shape, so they must not depend
        // on the thread count (the results would).
        if (nblocks >= 4) {
            nblocks = (nblocks + 3) / 4 * 4;
            nb = (N + nblocks - 1) / nblocks;
            nblocks = (N + nb - 1) / nb;
        }
        across = nt > 1 && (nblocks % nt == 0 || nblocks >= 4 * nt);
        // Below ~0.25 M multiply-adds, waking threads costs more than it saves
        // (and a loaded machine makes the wait far worse): stay on this thread.
        serial = nt < 2 || double(a.N) * a.O * L * K < 262144.0;
        if (serial) across = false;
    }
    index_t count(index_t b, index_t N) const { return std::min(nb, N - b * nb); }
};

// The kernel covers the whole (unpadded) image and gives one output pixel: the
// convolution is a fully connected layer (LeNet's C5), so it is one GEMM over
// the batch with no im2col at all.
inline bool is_dense(const ConvArgs& a) {
    const Geom& g = a.g;
    return a.groups == 1 && g.OH == 1 && g.OW == 1 && g.pt == 0 && g.pl == 0 && g.kh == g.H && g.kw == g.W &&
           g.dh == 1 && g.dw == 1;
}

template <typename F>
void for_each_block(const Plan& p, index_t N, F&& f) {
    if (N <= 0) return;
    if (p.across) {
        // dynamic: on a shared machine a preempted thread then delays one block, not its whole half
#pragma omp parallel for schedule(dynamic, 1)
        for (index_t b = 0; b < p.nblocks; ++b) f(b * p.nb, p.count(b, N), false);
    } else {
        for (index_t b = 0; b < p.nblocks; ++b) f(b * p.nb, p.count(b, N), !p.serial);
    }
}

// Columns of samples n0..n0+cnt of group grp, side by side: (K, cnt*L).
// With one sample and an identity geometry, the image itself is the matrix.
template <typename T>
const T* block_cols(const T* x, index_t C, const Plan& p, index_t n0, index_t cnt, index_t grp, T* col, bool par) {
    if (cnt == 1 && p.gg.is_identity()) return x + (n0 * C + grp * p.Cg) * p.HW;
    for (index_t i = 0; i < cnt; ++i) im2col(x + ((n0 + i) * C + grp * p.Cg) * p.HW, p.gg, col + i * p.L, cnt * p.L, par);
    return col;
}

// Copies rows o of samples n0.. between (N, O, L) layout and a (Og, cnt*L) block.
template <typename T>
void gather_block(const T* y, index_t O, const Plan& p, index_t n0, index_t cnt, index_t grp, T* blk) {
    for (index_t i = 0; i < cnt; ++i)
        for (index_t o = 0; o < p.Og; ++o)
            std::memcpy(blk + o * cnt * p.L + i * p.L, y + ((n0 + i) * O + grp * p.Og + o) * p.L, sizeof(T) * p.L);
}
template <typename T>
void scatter_block(const T* blk, index_t O, const Plan& p, index_t n0, index_t cnt, index_t grp, T* y) {
    for (index_t i = 0; i < cnt; ++i)
        for (index_t o = 0; o < p.Og; ++o)
            std::memcpy(y + ((n0 + i) * O + grp * p.Og + o) * p.L, blk + o * cnt * p.L + i * p.L, sizeof(T) * p.L);
}

}  // namespace

template <typename T>
void add_channel_bias(T* y, const T* b, index_t N, index_t C, index_t L) {
    if (L == 1) {  // (N, C) rows (linear layers): a vector add per row, no index division per element
#pragma omp parallel for schedule(static) if (N * C > 262144)
        for (index_t n = 0; n < N; ++n) {
            T* q = y + n * C;
#pragma omp simd
            for (index_t c = 0; c < C; ++c) q[c] += b[c];
        }
        return;
    }
#pragma omp parallel for schedule(static) if (N * C * L > 32768)
    for (index_t nc = 0; nc < N * C; ++nc) {
        const T bv = b[nc % C];
        T* q = y + nc * L;
#pragma omp simd
        for (index_t l = 0; l < L; ++l) q[l] += bv;
    }
}

template <typename T>
void channel_sum(const T* g, T* gb, index_t N, index_t C, index_t L) {
    if (L == 1 && C <= 65536) {  // (N, C) rows: sum down the columns, one vectorised row at a time
        double acc[256];
        for (index_t c0 = 0; c0 < C; c0 += 256) {  // double, as below: a float running sum drifts
            const index_t cn = std::min<index_t>(256, C - c0);
            std::fill(acc, acc + cn, 0.0);
            for (index_t n = 0; n < N; ++n) {
                const T* q = g + n * C + c0;
#pragma omp simd
                for (index_t c = 0; c < cn; ++c) acc[c] += q[c];
            }
            for (index_t c = 0; c < cn; ++c) gb[c0 + c] = T(acc[c]);
        }
        return;
    }
#pragma omp parallel for schedule(static) if (N * C * L > 32768)
    for (index_t c = 0; c < C; ++c) {
        double s = 0;  // double: a float running sum over N*L terms drifts
        for (index_t n = 0; n < N; ++n) {
            const T* q = g + (n * C + c) * L;
            T part = 0;
#pragma omp simd reduction(+ : part)
            for (index_t l = 0; l < L; ++l) part += q[l];
            s += part;
        }
        gb[c] = T(s);
    }
}

template <typename T>
void conv2d_forward(const T* x, const T* w, const T* bias, T* y, const ConvArgs& a) {
    if (is_dense(a)) {  // y (N, O) = x (N, K) @ w (O, K)^T
        const index_t K = a.g.C * a.g.H * a.g.W;
        gemm<T>(false, true, a.N, a.O, K, T(1), x, K, w, K, T(0), y, a.O, true);
        if (bias) add_channel_bias(y, bias, a.N, a.O, 1);
        return;
    }
    if constexpr (std::is_same_v<T, float>)
        if (conv2d_forward_winograd(x, w, bias, y, a) || conv2d_forward_direct(x, w, bias, y, a)) return;
    const Plan p(a);
    const index_t C = a.g.C, O = a.O;
    for_each_block(p, a.N, [&](index_t n0, index_t cnt, bool par) {
        T* col = scratch<T>(0, std::size_t(p.K * p.L * cnt));
        T* out = cnt == 1 ? nullptr : scratch<T>(1, std::size_t(p.Og * p.L * cnt));
        for (index_t grp = 0; grp < a.groups; ++grp) {
            const T* cols = block_cols(x, C, p, n0, cnt, grp, col, par);
            T* dst = cnt == 1 ? y + (n0 * O + grp * p.Og) * p.L : out;
            gemm<T>(false, false, p.Og, cnt * p.L, p.K, T(1), w + grp * p.Og * p.K, p.K, cols, cnt * p.L, T(0), dst,
                    cnt * p.L, par);
            if (cnt > 1) scatter_block(out, O, p, n0, cnt, grp, y);
        }
        if (bias) add_channel_bias(y + n0 * O * p.L, bias, cnt, O, p.L);
    });
}

template <typename T>
void conv2d_backward_data(const T* gy, const T* w, T* gx, const ConvArgs& a) {
    if (is_dense(a)) {  // gx (N, K) = gy (N, O) @ w (O, K)
        const index_t K = a.g.C * a.g.H * a.g.W;
        gemm<T>(false, false, a.N, K, a.O, T(1), gy, a.O, w, K, T(0), gx, K, true);
        return;
    }
    if constexpr (std::is_same_v<T, float>)
        if (conv2d_backward_winograd(gy, nullptr, w, gx, nullptr, nullptr, a) || conv2d_backward_data_direct(gy, w, gx, a))
            return;
    const Plan p(a);
    const index_t C = a.g.C, O = a.O;
    for_each_block(p, a.N, [&](index_t n0, index_t cnt, bool par) {
        T* col = scratch<T>(0, std::size_t(p.K * p.L * cnt));
        T* gblk = cnt == 1 ? nullptr : scratch<T>(1, std::size_t(p.Og * p.L * cnt));
        for (index_t grp = 0; grp < a.groups; ++grp) {
            const T* g = gy + (n0 * O + grp * p.Og) * p.L;
            if (cnt > 1) {
                gather_block(gy, O, p, n0, cnt, grp, gblk);
                g = gblk;
            }
            if (cnt == 1 && p.gg.is_identity()) {  // the column matrix is gx itself
                gemm<T>(true, false, p.K, p.L, p.Og, T(1), w + grp * p.Og * p.K, p.K, g, p.L, T(0),
                        gx + (n0 * C + grp * p.Cg) * p.HW, p.L, par);
                continue;
            }
            gemm<T>(true, false, p.K, cnt * p.L, p.Og, T(1), w + grp * p.Og * p.K, p.K, g, cnt * p.L, T(0), col,
                    cnt * p.L, par);
            for (index_t i = 0; i < cnt; ++i) {
                T* img = gx + ((n0 + i) * C + grp * p.Cg) * p.HW;
                std::memset(img, 0, sizeof(T) * p.Cg * p.HW);
                col2im(col + i * p.L, p.gg, cnt * p.L, img, par);
            }
        }
    });
}

template <typename T>
void conv2d_backward_weight(const T* gy, const T* x, T* gw, const ConvArgs& a) {
    if (is_dense(a)) {  // gw (O, K) = gy (N, O)^T @ x (N, K)
        const index_t K = a.g.C * a.g.H * a.g.W;
        gemm<T>(true, false, a.O, K, a.N, T(1), gy, a.O, x, K, T(0), gw, K, true);
        return;
    }
    if constexpr (std::is_same_v<T, float>)
        if (conv2d_backward_winograd(gy, x, nullptr, nullptr, gw, nullptr, a) || conv2d_backward_weight_direct(gy, x, gw, a))
            return;
    // The weight gradient reduces over the columns: longer blocks give BLAS a
    // longer inner dimension (first layers with 1-3 channels, float64, strided convs).
    const Plan p(a, kWeightGradCols);
    const index_t C = a.g.C, O = a.O, WK = O * p.K;  // gw is (O, K)
    auto accumulate = [&](index_t n0, index_t cnt, T* acc, bool par) {
        T* col = scratch<T>(0, std::size_t(p.K * p.L * cnt));
        T* gblk = cnt == 1 ? nullptr : scratch<T>(1, std::size_t(p.Og * p.L * cnt));
        for (index_t grp = 0; grp < a.groups; ++grp) {
            const T* cols = block_cols(x, C, p, n0, cnt, grp, col, par);
            const T* g = gy + (n0 * O + grp * p.Og) * p.L;
            if (cnt > 1) {
                gather_block(gy, O, p, n0, cnt, grp, gblk);
                g = gblk;
            }
            gemm<T>(false, true, p.Og, p.K, cnt * p.L, T(1), g, cnt * p.L, cols, cnt * p.L, T(1),
                    acc + grp * p.Og * p.K, p.K, par);
        }
    };
    std::memset(gw, 0, sizeof(T) * WK);
    if (a.N <= 0) return;
    // The blocks go into fixed chunks (sum_chunks: from the sizes only), each summed in
    // block order into its own copy by whichever thread takes it, and the copies are
    // added in chunk order: the bits of gw do not depend on the thread count.
    const index_t parts = sum_chunks(p.nblocks, WK);
    if (parts == 1) {
        for (index_t b = 0; b < p.nblocks; ++b) accumulate(b * p.nb, p.count(b, a.N), gw, !p.serial);
        return;
    }
    T* acc = scratch<T>(4, std::size_t(parts * WK));
    std::fill(acc, acc + parts * WK, T(0));
    const bool across = !p.serial && parts >= 2;
#pragma omp parallel for schedule(dynamic, 1) if (across)
    for (index_t c = 0; c < parts; ++c)
        for (index_t b = chunk_begin(p.nblocks, parts, c); b < chunk_begin(p.nblocks, parts, c + 1); ++b)
            accumulate(b * p.nb, p.count(b, a.N), acc + c * WK, false);
    std::copy(acc, acc + WK, gw);
    for (index_t c = 1; c < parts; ++c) {
        const T* src = acc + c * WK;
#pragma omp simd
        for (index_t i = 0; i < WK; ++i) gw[i] += src[i];
    }
}

template <typename T>
void conv2d_backward(const T* gy, const T* x, const T* w, T* gx, T* gw, T* gb, const ConvArgs& a) {
    // Winograd does all gradients from one channel-last copy of gy (the data gradient
    // alone only when the weight's is not wanted: conv2d_backward_data tries it too)
    if constexpr (std::is_same_v<T, float>)
        if (gw && conv2d_backward_winograd(gy, x, w, gx, gw, gb, a)) return;
    if (gx) conv2d_backward_data(gy, w, gx, a);
    if (gw) conv2d_backward_weight(gy, x, gw, a);
    if (gb) channel_sum(gy, gb, a.N, a.O, a.g.OH * a.g.OW);
}

#define PCN_INST(T)                                                                     \
    template void conv2d_backward<T>(const T*, const T*, const T*, T*, T*, T*, const ConvArgs&); \
    template void conv2d_forward<T>(const T*, const T*, const T*, T*, const ConvArgs&); \
    template void conv2d_backward_data<T>(const T*, const T*, T*, const ConvArgs&);     \
    template void conv2d_backward_weight<T>(const T*, const T*, T*, const ConvArgs&);   \
    template void channel_sum<T>(const T*, T*, index_t, index_t, index_t);              \
    template void add_channel_bias<T>(T*, const T*, index_t, index_t, index_t);
PCN_INST(float)
PCN_INST(double)
#undef PCN_INST

}  // namespace pcn
