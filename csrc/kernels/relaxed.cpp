// Relaxed / receptive-field convolution kernels (see relaxed.h for the layouts).
//
// Relaxed (dense L): a block of samples is made channel-major, xs (C, nb, n_in), and L
// (n_in, n_out, k) is used as it lies, a matrix (n_in, n_out*k), so
//   P (C*nb, n_out*k) = xs (C*nb, n_in) @ L
// is one GEMM with no copy of L, and P[c] is an (nb*n_out, k) matrix. The mixing of the
// whole block is C more GEMMs,
//   Z (O, nb*n_out) = sum_c w[:, c, :] (O, k) @ P[c]^T,      y[n, o, :] = Z[o, n, :],
// and the backward is the same in reverse with G (O, nb*n_out) = grad_y's block made
// channel-major: grad_w[:, c, :] += G @ P[c], grad_P[c] = G^T @ w[:, c, :], then one GEMM
// each for grad_x = grad_P @ L^T and grad_L += xs^T @ grad_P. Only grad_w needs P again:
// the caller may hand back the forward's P (relaxed_conv_forward's P_out, layout
// (C, N, n_out, k)), else it is recomputed block by block. All GEMMs are split over the
// OpenMP threads; none is per sample (the small per-sample GEMMs of an earlier version
// spent most of their time in BLAS call overhead).
//
// Receptive (integer index): P'[n] is a generalised im2col gather (index -1 reads
// zero), then the same per-sample GEMM. Its input gradient is the matching
// scatter-add; a thread owns whole (sample) or (sample, channel) rows of grad_x,
// so no two threads ever write one element.
#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/conv.h"  // channel_sum, add_channel_bias
#include "core/blas.h"
#include "core/parallel.h"
#include "kernels/relaxed.h"

namespace pcn {

namespace {

constexpr int kSlot = 3;                         // our scratch slot for P blocks (see relaxed.h)
constexpr double kSerialWork = 262144.0;         // below this many multiply-adds, stay on one thread
constexpr index_t kBlockElems = index_t(1) << 22;  // scratch budget (elements) of one relaxed block

inline bool threads_pay(double work) { return max_threads() > 1 && !in_parallel() && work >= kSerialWork; }

// Runs f(n, inner_parallel) for n in [0, cnt) (samples, or chunks of them): one per
// thread when there are enough and enough work, else sequentially with the GEMMs
// inside split over threads (over rows or columns, so no sum changes order).
template <typename F>
void for_samples(index_t cnt, double work_per_sample, F&& f) {
    const bool big = threads_pay(work_per_sample * double(cnt));
    const bool across = big && cnt >= 2;
    if (across) {
#pragma omp parallel for schedule(static)
        for (index_t n = 0; n < cnt; ++n) f(n, false);
    } else {
        for (index_t n = 0; n < cnt; ++n) f(n, big);
    }
}

// Sums nt partials of size m into out, in order.
template <typename T>
void reduce_parts(const std::vector<T>& parts, index_t nt, index_t m, T* out) {
    for (index_t i = 0; i < m; ++i) {
        T s = 0;
        for (index_t t = 0; t < nt; ++t) s += parts[std::size_t(t * m + i)];
        out[i] = s;
    }
}

// dst[b, a, :] = src[a, b, :] for a < A, b < B, rows of m elements.
template <typename T>
void swap_outer(const T* src, T* dst, index_t A, index_t B, index_t m) {
    const bool par = threads_pay(double(A) * B * m);
#pragma omp parallel for schedule(static) if (par)
    for (index_t bi = 0; bi < B; ++bi)
        for (index_t ai = 0; ai < A; ++ai) std::memcpy(dst + (bi * A + ai) * m, src + (ai * B + bi) * m, sizeof(T) * m);
}

// cols (C*k, n_out), rows (c, s): cols[(c*k+s), j] = x[c, idxT[s, j]] or 0 for -1.
template <typename T>
void gather_cols(const T* xn, const index_t* idxT, T* cols, const RelaxedArgs& a, bool par) {
    const index_t rows = a.C * a.k;
#pragma omp parallel for schedule(static) if (par)
    for (index_t r = 0; r < rows; ++r) {
        const index_t c = r / a.k, s = r % a.k;
        const T* xc = xn + c * a.n_in;
        const index_t* id = idxT + s * a.n_out;
        T* dst = cols + r * a.n_out;
        for (index_t j = 0; j < a.n_out; ++j) {
            const index_t i = id[j];
            dst[j] = i >= 0 ? xc[i] : T(0);
        }
    }
}

// gx[c, idxT[s, j]] += dcols[(c*k+s), j]; gxn (C, n_in) is zeroed first. Parallel over c:
// a channel's row of gx belongs to one thread.
template <typename T>
void scatter_cols(const T* dcols, const index_t* idxT, T* gxn, const RelaxedArgs& a, bool par) {
#pragma omp parallel for schedule(static) if (par)
    for (index_t c = 0; c < a.C; ++c) {
        T* gc = gxn + c * a.n_in;
        std::fill(gc, gc + a.n_in, T(0));
        for (index_t s = 0; s < a.k; ++s) {
            const index_t* id = idxT + s * a.n_out;
            const T* src = dcols + (c * a.k + s) * a.n_out;
            for (index_t j = 0; j < a.n_out; ++j) {
                const index_t i = id[j];
                if (i >= 0) gc[i] += src[j];
            }
        }
    }
}

std::vector<index_t> transpose_index(const index_t* index, index_t n_out, index_t k) {
    std::vector<index_t> t(std::size_t(n_out * k));
    for (index_t j = 0; j < n_out; ++j)
        for (index_t s = 0; s < k; ++s) t[std::size_t(s * n_out + j)] = index[j * k + s];
    return t;
}

}  // namespace

// ------------------------------------------------------------------ relaxed (dense L)
// Samples per block: the x, P, dP, grad_y/y staging and grad_x buffers of one sample, all
// within budget (at least one sample).
inline index_t relaxed_block(const RelaxedArgs& a) {
    const index_t per = std::max<index_t>(1, 2 * a.C * a.k * a.n_out + a.O * a.n_out + 2 * a.C * a.n_in);
    return std::max<index_t>(1, std::min<index_t>(std::max<index_t>(a.N, 1), kBlockElems / per));
}

// Where a block's P lives: channel c's (cnt*n_out, k) rows start at base + c * cstride.
template <typename T>
struct PBlock {
    T* base;
    index_t cstride;
    T* chan(index_t c) const { return base + c * cstride; }
};

// Channel-major view of a block of x: xs (C, cnt, n_in), a copy unless C == 1.
template <typename T>
const T* channel_major(const T* xb, T* buf, index_t cnt, const RelaxedArgs& a) {
    if (a.C == 1) return xb;
    swap_outer(xb, buf, cnt, a.C, a.n_in);
    return buf;
}

// P[c] (cnt*n_out, k) = xs[c] (cnt, n_in) @ L (n_in, n_out*k), for every channel.
template <typename T>
void compute_P(const T* xs, const T* L, const PBlock<T>& P, index_t cnt, const RelaxedArgs& a) {
    const index_t Kn = a.k * a.n_out;
    if (P.cstride == cnt * Kn) {  // channels adjacent: one GEMM
        gemm<T>(false, false, a.C * cnt, Kn, a.n_in, T(1), xs, a.n_in, L, Kn, T(0), P.base, Kn, true);
        return;
    }
    for (index_t c = 0; c < a.C; ++c)
        gemm<T>(false, false, cnt, Kn, a.n_in, T(1), xs + c * cnt * a.n_in, a.n_in, L, Kn, T(0), P.chan(c), Kn, true);
}

template <typename T>
void relaxed_conv_forward(const T* x, const T* L, const T* w, const T* bias, T* y, T* P_out,
                          const RelaxedArgs& a) {
    const index_t Ck = a.C * a.k, Kn = a.k * a.n_out, Y = a.O * a.n_out;
    if (a.N <= 0) return;
    if (Ck <= 0 || a.n_out <= 0 || a.n_in <= 0) {
        std::fill(y, y + a.N * Y, T(0));
        if (P_out) std::fill(P_out, P_out + a.N * a.C * Kn, T(0));
    } else if (Y > 0 || P_out) {
        const index_t nb = relaxed_block(a);
        // buffer: xs (C > 1) | P block (no P_out) | Z
        const index_t sz_x = a.C > 1 ? nb * a.C * a.n_in : 0, sz_P = P_out ? 0 : nb * a.C * Kn;
        T* buf = scratch<T>(kSlot, std::size_t(sz_x + sz_P + nb * Y));
        T* Z = buf + sz_x + sz_P;
        for (index_t n0 = 0; n0 < a.N; n0 += nb) {
            const index_t cnt = std::min(nb, a.N - n0);
            const T* xs = channel_major(x + n0 * a.C * a.n_in, buf, cnt, a);
            const PBlock<T> P = P_out ? PBlock<T>{P_out + n0 * Kn, a.N * Kn} : PBlock<T>{buf + sz_x, cnt * Kn};
            compute_P(xs, L, P, cnt, a);
            if (Y <= 0) continue;
            // Z (O, cnt*n_out) = sum_c w[:, c, :] (O, k) @ P[c]^T: the mixing of the whole block
            // in C GEMMs (per-sample GEMMs of 8 x 784 x 9 were a third of the time, in BLAS overhead)
            for (index_t c = 0; c < a.C; ++c)
                gemm<T>(false, true, a.O, cnt * a.n_out, a.k, T(1), w + c * a.k, Ck, P.chan(c), a.k,
                        c ? T(1) : T(0), Z, cnt * a.n_out, true);
            swap_outer(Z, y + n0 * Y, a.O, cnt, a.n_out);  // (O, cnt, n_out) -> (cnt, O, n_out)
        }
    }
    if (bias && Y > 0) add_channel_bias(y, bias, a.N, a.O, a.n_out);
}

// gb[o] = sum over samples and outputs of gy (zeros for an empty batch)
template <typename T>
void bias_grad(const T* gy, T* gb, const RelaxedArgs& a) {
    if (a.N > 0 && a.n_out > 0)
        channel_sum(gy, gb, a.N, a.O, a.n_out);
    else
        std::fill(gb, gb + a.O, T(0));
}

template <typename T>
void relaxed_conv_backward(const T* gy, const T* x, const T* L, const T* w, const T* P_in, T* gx, T* gL, T* gw,
                           T* gb, const RelaxedArgs& a) {
    const index_t Ck = a.C * a.k, Kn = a.k * a.n_out, LS = a.n_in * Kn, WS = a.O * Ck;
    if (gb) bias_grad(gy, gb, a);
    if (gw) std::fill(gw, gw + WS, T(0));  // accumulated over blocks and channels
    if (a.N <= 0 || Ck <= 0 || a.n_out <= 0 || a.O <= 0 || (!gx && !gL && !gw)) {
        // nothing flows back: zero gradients (the GEMMs below overwrite them otherwise, so
        // no fill there: for gL that would be a second pass over n_in*n_out*k elements)
        if (gx) std::fill(gx, gx + a.N * a.C * a.n_in, T(0));
        if (gL) std::fill(gL, gL + LS, T(0));
        return;
    }

    const index_t nb = relaxed_block(a);
    const bool need_dP = gx || gL;
    const bool own_P = gw && !P_in;
    // buffer: xs (C > 1) | P block (recomputed) | dP block | G | grad xs (C > 1)
    const index_t sz_x = a.C > 1 ? nb * a.C * a.n_in : 0, sz_P = own_P ? nb * a.C * Kn : 0,
                  sz_dP = need_dP ? nb * a.C * Kn : 0, sz_G = nb * a.O * a.n_out,
                  sz_gx = gx && a.C > 1 ? nb * a.C * a.n_in : 0;
    T* buf = scratch<T>(kSlot, std::size_t(sz_x + sz_P + sz_dP + sz_G + sz_gx));
    T* dP = buf + sz_x + sz_P;
    T* G = dP + sz_dP;
    T* gxs_buf = G + sz_G;

    for (index_t n0 = 0; n0 < a.N; n0 += nb) {
        const index_t cnt = std::min(nb, a.N - n0), M = cnt * a.n_out;
        const T* xs = channel_major(x + n0 * a.C * a.n_in, buf, cnt, a);
        swap_outer(gy + n0 * a.O * a.n_out, G, cnt, a.O, a.n_out);  // G (O, cnt*n_out)
        if (gw) {
            const PBlock<T> P = P_in ? PBlock<T>{const_cast<T*>(P_in) + n0 * Kn, a.N * Kn}
                                     : PBlock<T>{buf + sz_x, cnt * Kn};
            if (own_P) compute_P(xs, L, P, cnt, a);
            for (index_t c = 0; c < a.C; ++c)  // gw[:, c, :] (O, k) += G (O, M) @ P[c] (M, k)
                gemm<T>(false, false, a.O, a.k, M, T(1), G, M, P.chan(c), a.k, T(1), gw + c * a.k, Ck, true);
        }
        if (!need_dP) continue;
        for (index_t c = 0; c < a.C; ++c)  // dP[c] (M, k) = G^T (M, O) @ w[:, c, :] (O, k)
            gemm<T>(true, false, M, a.k, a.O, T(1), G, M, w + c * a.k, Ck, T(0), dP + c * cnt * Kn, a.k, true);
        if (gx && a.n_in > 0) {
            T* gxb = gx + n0 * a.C * a.n_in;
            T* gxs = a.C > 1 ? gxs_buf : gxb;
            gemm<T>(false, true, a.C * cnt, a.n_in, Kn, T(1), dP, Kn, L, Kn, T(0), gxs, a.n_in, true);
            if (a.C > 1) swap_outer(gxs, gxb, a.C, cnt, a.n_in);
        }
        if (gL && a.n_in > 0)
            gemm<T>(true, false, a.n_in, Kn, a.C * cnt, T(1), xs, a.n_in, dP, Kn, n0 ? T(1) : T(0), gL, Kn, true);
    }
}

// ------------------------------------------------------------------ receptive (integer index)
template <typename T>
void receptive_conv_forward(const T* x, const index_t* index, const T* w, const T* bias, T* y,
                            const RelaxedArgs& a) {
    const index_t Ck = a.C * a.k, Y = a.O * a.n_out;
    if (a.N <= 0 || Y <= 0) return;
    if (Ck <= 0) {
        std::fill(y, y + a.N * Y, T(0));
    } else {
        const std::vector<index_t> idxT = transpose_index(index, a.n_out, a.k);
        for_samples(a.N, double(a.O) * Ck * a.n_out, [&](index_t n, bool par) {
            T* cols = scratch<T>(kSlot, std::size_t(Ck * a.n_out));
            gather_cols(x + n * a.C * a.n_in, idxT.data(), cols, a, par);
            gemm<T>(false, false, a.O, a.n_out, Ck, T(1), w, Ck, cols, a.n_out, T(0), y + n * Y, a.n_out, par);
        });
    }
    if (bias) add_channel_bias(y, bias, a.N, a.O, a.n_out);
}

template <typename T>
void receptive_conv_backward(const T* gy, const T* x, const index_t* index, const T* w, T* gx, T* gw, T* gb,
                             const RelaxedArgs& a) {
    const index_t Ck = a.C * a.k, WS = a.O * Ck, CS = Ck * a.n_out;
    if (gb) bias_grad(gy, gb, a);
    if (gx) std::fill(gx, gx + a.N * a.C * a.n_in, T(0));
    if (gw) std::fill(gw, gw + WS, T(0));
    if (a.N <= 0 || Ck <= 0 || a.n_out <= 0 || a.O <= 0 || (!gx && !gw)) return;

    const std::vector<index_t> idxT = transpose_index(index, a.n_out, a.k);
    // The samples go into fixed chunks (sum_chunks: from the sizes only), each summed
    // in sample order into its own copy of gw, added in chunk order at the end: the
    // bits of gw do not depend on the thread count.
    const index_t parts = gw ? sum_chunks(a.N, WS) : 1;
    std::vector<T> acc(gw ? std::size_t(parts * WS) : 0, T(0));
    const double work = double(a.O) * CS * ((gw ? 1 : 0) + (gx ? 1 : 0));
    for_samples(parts, work * double(a.N) / double(parts), [&](index_t c, bool par) {
        T* buf = scratch<T>(kSlot, std::size_t(CS * ((gw ? 1 : 0) + (gx ? 1 : 0))));
        for (index_t n = chunk_begin(a.N, parts, c); n < chunk_begin(a.N, parts, c + 1); ++n) {
            const T* gyn = gy + n * a.O * a.n_out;
            if (gw) {
                gather_cols(x + n * a.C * a.n_in, idxT.data(), buf, a, par);
                gemm<T>(false, true, a.O, Ck, a.n_out, T(1), gyn, a.n_out, buf, a.n_out, T(1), acc.data() + c * WS, Ck,
                        par);
            }
            if (gx) {
                T* dcols = gw ? buf + CS : buf;
                gemm<T>(true, false, Ck, a.n_out, a.O, T(1), w, Ck, gyn, a.n_out, T(0), dcols, a.n_out, par);
                scatter_cols(dcols, idxT.data(), gx + n * a.C * a.n_in, a, par);
            }
        }
    });
    if (gw) reduce_parts(acc, parts, WS, gw);
}

#define PCN_INST(T)                                                                                              \
    template void relaxed_conv_forward<T>(const T*, const T*, const T*, const T*, T*, T*, const RelaxedArgs&); \
    template void relaxed_conv_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, T*,    \
                                           const RelaxedArgs&);                                                 \
    template void receptive_conv_forward<T>(const T*, const index_t*, const T*, const T*, T*, const RelaxedArgs&); \
    template void receptive_conv_backward<T>(const T*, const T*, const index_t*, const T*, T*, T*, T*,          \
                                             const RelaxedArgs&);
PCN_INST(float)
PCN_INST(double)
#undef PCN_INST

}  // namespace pcn
