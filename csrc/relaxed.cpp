// Relaxed / receptive-field convolution kernels (see relaxed.h for the layouts).
//
// Relaxed (dense L): L is first permuted to Lp (n_in, k, n_out) so that one GEMM
//   P' (nb*C, k*n_out) = x_blk (nb*C, n_in) @ Lp (n_in, k*n_out)
// gives, per sample, a (C*k, n_out) column matrix with rows in (c, s) order, and
//   y[n] (O, n_out) = w (O, C*k) @ P'[n]
// is the second GEMM. Samples go in blocks that bound the P' buffer; the big GEMM
// is split over the OpenMP threads, the per-sample GEMMs run one sample per thread.
//
// Receptive (integer index): P'[n] is a generalised im2col gather (index -1 reads
// zero), then the same per-sample GEMM. Its input gradient is the matching
// scatter-add; a thread owns whole (sample) or (sample, channel) rows of grad_x,
// so no two threads ever write one element.
#include <algorithm>
#include <cstring>
#include <vector>

#include "conv.h"  // channel_sum, add_channel_bias
#include "relaxed.h"

namespace pcn {

namespace {

constexpr int kSlot = 3;                         // our scratch slot; 0-2 are the convolution's
constexpr double kSerialWork = 262144.0;         // below this many multiply-adds, stay on one thread
constexpr index_t kBlockElems = index_t(1) << 22;  // P' block budget (elements) for the relaxed kernels

inline bool threads_pay(double work) { return max_threads() > 1 && !in_parallel() && work >= kSerialWork; }

// Runs f(n, inner_parallel) for n in [0, cnt): one sample per thread when there are
// enough samples and work, else sequentially with the GEMMs inside split over threads.
template <typename F>
void for_samples(index_t cnt, double work_per_sample, F&& f) {
    const bool big = threads_pay(work_per_sample * double(cnt));
    const bool across = big && cnt >= 2;
    if (across) {
#pragma omp parallel for schedule(dynamic, 1)
        for (index_t n = 0; n < cnt; ++n) f(n, false);
    } else {
        for (index_t n = 0; n < cnt; ++n) f(n, big);
    }
}

// Lp[i, s, j] = L[i, j, s]  (and back with inverse = true).
template <typename T>
void permute_L(const T* src, T* dst, index_t n_in, index_t n_out, index_t k, bool inverse) {
    const bool par = threads_pay(double(n_in) * n_out * k * 4);
#pragma omp parallel for schedule(static) if (par)
    for (index_t i = 0; i < n_in; ++i) {
        const index_t base = i * n_out * k;
        for (index_t j = 0; j < n_out; ++j)
            for (index_t s = 0; s < k; ++s) {
                if (inverse)
                    dst[base + j * k + s] = src[base + s * n_out + j];
                else
                    dst[base + s * n_out + j] = src[base + j * k + s];
            }
    }
}

// Samples per block so that a (nb*C, k*n_out) buffer stays within budget (at least one sample).
inline index_t block_samples(const RelaxedArgs& a) {
    const index_t per = std::max<index_t>(1, a.C * a.k * a.n_out);
    return std::max<index_t>(1, std::min<index_t>(std::max<index_t>(a.N, 1), kBlockElems / per));
}

// Sums nt per-thread partials of size m into out.
template <typename T>
void reduce_parts(const std::vector<T>& parts, int nt, index_t m, T* out) {
    for (index_t i = 0; i < m; ++i) {
        T s = 0;
        for (int t = 0; t < nt; ++t) s += parts[std::size_t(t) * m + i];
        out[i] = s;
    }
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
template <typename T>
void relaxed_conv_forward(const T* x, const T* L, const T* w, const T* bias, T* y, const RelaxedArgs& a) {
    const index_t Ck = a.C * a.k, Kn = a.k * a.n_out, Y = a.O * a.n_out;
    if (a.N <= 0) return;
    if (Y <= 0) return;
    if (Ck <= 0 || a.n_out <= 0) {
        std::fill(y, y + a.N * Y, T(0));
    } else {
        const index_t nb = block_samples(a);
        T* buf = scratch<T>(kSlot, std::size_t(a.n_in * Kn + nb * a.C * Kn));
        T* Lp = buf;
        T* P = buf + a.n_in * Kn;
        permute_L(L, Lp, a.n_in, a.n_out, a.k, false);
        for (index_t n0 = 0; n0 < a.N; n0 += nb) {
            const index_t cnt = std::min(nb, a.N - n0);
            gemm<T>(false, false, cnt * a.C, Kn, a.n_in, T(1), x + n0 * a.C * a.n_in, a.n_in, Lp, Kn, T(0), P, Kn,
                    true);
            for_samples(cnt, double(a.O) * Ck * a.n_out, [&](index_t i, bool par) {
                gemm<T>(false, false, a.O, a.n_out, Ck, T(1), w, Ck, P + i * a.C * Kn, a.n_out, T(0),
                        y + (n0 + i) * Y, a.n_out, par);
            });
        }
    }
    if (bias) add_channel_bias(y, bias, a.N, a.O, a.n_out);
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
void relaxed_conv_backward(const T* gy, const T* x, const T* L, const T* w, T* gx, T* gL, T* gw, T* gb,
                           const RelaxedArgs& a) {
    const index_t Ck = a.C * a.k, Kn = a.k * a.n_out, LS = a.n_in * Kn, WS = a.O * Ck;
    if (gb) bias_grad(gy, gb, a);
    if (gx) std::fill(gx, gx + a.N * a.C * a.n_in, T(0));
    if (gL) std::fill(gL, gL + LS, T(0));
    if (gw) std::fill(gw, gw + WS, T(0));
    if (a.N <= 0 || Ck <= 0 || a.n_out <= 0 || a.O <= 0 || (!gx && !gL && !gw)) return;

    const index_t nb = block_samples(a);
    const bool need_dP = gx || gL;
    // buffer: Lp | gLp | P block | dP block
    const index_t sz_Lp = LS, sz_gLp = gL ? LS : 0, sz_P = gw ? nb * a.C * Kn : 0, sz_dP = need_dP ? nb * a.C * Kn : 0;
    T* buf = scratch<T>(kSlot, std::size_t(sz_Lp + sz_gLp + sz_P + sz_dP));
    T* Lp = buf;
    T* gLp = Lp + sz_Lp;
    T* P = gLp + sz_gLp;
    T* dP = P + sz_P;
    permute_L(L, Lp, a.n_in, a.n_out, a.k, false);
    if (gL) std::fill(gLp, gLp + LS, T(0));
    const int nt = max_threads();
    std::vector<T> parts(gw ? std::size_t(nt) * WS : 0, T(0));

    for (index_t n0 = 0; n0 < a.N; n0 += nb) {
        const index_t cnt = std::min(nb, a.N - n0);
        const T* xb = x + n0 * a.C * a.n_in;
        if (gw) gemm<T>(false, false, cnt * a.C, Kn, a.n_in, T(1), xb, a.n_in, Lp, Kn, T(0), P, Kn, true);
        const double work = double(a.O) * Ck * a.n_out * ((gw ? 1 : 0) + (need_dP ? 1 : 0));
        for_samples(cnt, work, [&](index_t i, bool par) {
            const T* gyn = gy + (n0 + i) * a.O * a.n_out;
            if (gw) {
                T* acc = parts.data() + std::size_t(par ? 0 : thread_id()) * WS;
                gemm<T>(false, true, a.O, Ck, a.n_out, T(1), gyn, a.n_out, P + i * a.C * Kn, a.n_out, T(1), acc, Ck,
                        par);
            }
            if (need_dP)
                gemm<T>(true, false, Ck, a.n_out, a.O, T(1), w, Ck, gyn, a.n_out, T(0), dP + i * a.C * Kn, a.n_out,
                        par);
        });
        if (gx && a.n_in > 0)
            gemm<T>(false, true, cnt * a.C, a.n_in, Kn, T(1), dP, Kn, Lp, Kn, T(0), gx + n0 * a.C * a.n_in, a.n_in,
                    true);
        if (gL && a.n_in > 0)
            gemm<T>(true, false, a.n_in, Kn, cnt * a.C, T(1), xb, a.n_in, dP, Kn, T(1), gLp, Kn, true);
    }
    if (gL) permute_L(gLp, gL, a.n_in, a.n_out, a.k, true);
    if (gw) reduce_parts(parts, nt, WS, gw);
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
    const int nt = max_threads();
    std::vector<T> parts(gw ? std::size_t(nt) * WS : 0, T(0));
    const double work = double(a.O) * CS * ((gw ? 1 : 0) + (gx ? 1 : 0));
    for_samples(a.N, work, [&](index_t n, bool par) {
        T* buf = scratch<T>(kSlot, std::size_t(CS * ((gw ? 1 : 0) + (gx ? 1 : 0))));
        const T* gyn = gy + n * a.O * a.n_out;
        if (gw) {
            T* acc = parts.data() + std::size_t(par ? 0 : thread_id()) * WS;
            gather_cols(x + n * a.C * a.n_in, idxT.data(), buf, a, par);
            gemm<T>(false, true, a.O, Ck, a.n_out, T(1), gyn, a.n_out, buf, a.n_out, T(1), acc, Ck, par);
        }
        if (gx) {
            T* dcols = gw ? buf + CS : buf;
            gemm<T>(true, false, Ck, a.n_out, a.O, T(1), w, Ck, gyn, a.n_out, T(0), dcols, a.n_out, par);
            scatter_cols(dcols, idxT.data(), gx + n * a.C * a.n_in, a, par);
        }
    });
    if (gw) reduce_parts(parts, nt, WS, gw);
}

#define PCN_INST(T)                                                                                              \
    template void relaxed_conv_forward<T>(const T*, const T*, const T*, const T*, T*, const RelaxedArgs&);      \
    template void relaxed_conv_backward<T>(const T*, const T*, const T*, const T*, T*, T*, T*, T*,              \
                                           const RelaxedArgs&);                                                 \
    template void receptive_conv_forward<T>(const T*, const index_t*, const T*, const T*, T*, const RelaxedArgs&); \
    template void receptive_conv_backward<T>(const T*, const T*, const index_t*, const T*, T*, T*, T*,          \
                                             const RelaxedArgs&);
PCN_INST(float)
PCN_INST(double)
#undef PCN_INST

}  // namespace pcn
