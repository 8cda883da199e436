// Convolution = im2col + GEMM per (sample, group). Samples are spread over the
// OpenMP threads when there are enough of them; otherwise each sample's
// im2col and GEMM are split across threads instead.
#include <cstring>
#include <vector>
#include "conv.h"

namespace pcn {

namespace {
struct Dims {
    index_t Cg, Og, K, L, HW;
    Geom gg;  // per-group geometry
    bool ident;
    explicit Dims(const ConvArgs& a) {
        Cg = a.g.C / a.groups;
        Og = a.O / a.groups;
        K = Cg * a.g.kh * a.g.kw;
        L = a.g.OH * a.g.OW;
        HW = a.g.H * a.g.W;
        gg = a.g;
        gg.C = Cg;
        ident = gg.is_identity();
    }
};

// Sample-parallel when the batch splits evenly or is large; else parallel inside each sample.
inline bool samples_in_parallel(index_t N) {
    int nt = max_threads();
    return nt > 1 && (N % nt == 0 || N >= 4 * nt);
}

template <typename F>
void for_each_sample(index_t N, F&& f) {
    if (samples_in_parallel(N)) {
#pragma omp parallel for schedule(static)
        for (index_t n = 0; n < N; ++n) f(n, false);
    } else {
        for (index_t n = 0; n < N; ++n) f(n, true);
    }
}
}  // namespace

template <typename T>
void add_channel_bias(T* y, const T* b, index_t N, index_t C, index_t L) {
#pragma omp parallel for schedule(static) if (N * C * L > 32768)
    for (index_t nc = 0; nc < N * C; ++nc) {
        const T bv = b[nc % C];
        T* p = y + nc * L;
#pragma omp simd
        for (index_t l = 0; l < L; ++l) p[l] += bv;
    }
}

template <typename T>
void channel_sum(const T* g, T* gb, index_t N, index_t C, index_t L) {
#pragma omp parallel for schedule(static) if (N * C * L > 32768)
    for (index_t c = 0; c < C; ++c) {
        double s = 0;  // double: a float running sum over N*L terms drifts
        for (index_t n = 0; n < N; ++n) {
            const T* p = g + (n * C + c) * L;
            T part = 0;
#pragma omp simd reduction(+ : part)
            for (index_t l = 0; l < L; ++l) part += p[l];
            s += part;
        }
        gb[c] = T(s);
    }
}

template <typename T>
void conv2d_forward(const T* x, const T* w, const T* bias, T* y, const ConvArgs& a) {
    const Dims d(a);
    const index_t C = a.g.C, O = a.O;
    for_each_sample(a.N, [&](index_t n, bool par) {
        const T* xn = x + n * C * d.HW;
        T* yn = y + n * O * d.L;
        T* col = d.ident ? nullptr : scratch<T>(0, std::size_t(d.K * d.L));
        for (index_t grp = 0; grp < a.groups; ++grp) {
            const T* xg = xn + grp * d.Cg * d.HW;
            const T* cols = xg;
            if (!d.ident) {
                im2col(xg, d.gg, col, par);
                cols = col;
            }
            gemm<T>(false, false, d.Og, d.L, d.K, T(1), w + grp * d.Og * d.K, d.K, cols, d.L, T(0),
                    yn + grp * d.Og * d.L, d.L, par);
        }
        if (bias)
            for (index_t o = 0; o < O; ++o) {
                T* p = yn + o * d.L;
                const T bv = bias[o];
#pragma omp simd
                for (index_t l = 0; l < d.L; ++l) p[l] += bv;
            }
    });
}

template <typename T>
void conv2d_backward_data(const T* gy, const T* w, T* gx, const ConvArgs& a) {
    const Dims d(a);
    const index_t C = a.g.C, O = a.O;
    for_each_sample(a.N, [&](index_t n, bool par) {
        const T* gyn = gy + n * O * d.L;
        T* gxn = gx + n * C * d.HW;
        if (d.ident) {
            for (index_t grp = 0; grp < a.groups; ++grp)
                gemm<T>(true, false, d.K, d.L, d.Og, T(1), w + grp * d.Og * d.K, d.K, gyn + grp * d.Og * d.L, d.L,
                        T(0), gxn + grp * d.Cg * d.HW, d.L, par);
            return;
        }
        std::memset(gxn, 0, sizeof(T) * C * d.HW);
        T* col = scratch<T>(1, std::size_t(d.K * d.L));
        for (index_t grp = 0; grp < a.groups; ++grp) {
            gemm<T>(true, false, d.K, d.L, d.Og, T(1), w + grp * d.Og * d.K, d.K, gyn + grp * d.Og * d.L, d.L, T(0),
                    col, d.L, par);
            col2im(col, d.gg, gxn + grp * d.Cg * d.HW, par);
        }
    });
}

template <typename T>
void conv2d_backward_weight(const T* gy, const T* x, T* gw, const ConvArgs& a) {
    const Dims d(a);
    const index_t C = a.g.C, O = a.O, WK = O * d.K;  // gw is (O, K)
    auto accumulate = [&](index_t n, T* acc, bool par) {
        const T* xn = x + n * C * d.HW;
        const T* gyn = gy + n * O * d.L;
        T* col = d.ident ? nullptr : scratch<T>(0, std::size_t(d.K * d.L));
        for (index_t grp = 0; grp < a.groups; ++grp) {
            const T* cols = xn + grp * d.Cg * d.HW;
            if (!d.ident) {
                im2col(cols, d.gg, col, par);
                cols = col;
            }
            gemm<T>(false, true, d.Og, d.K, d.L, T(1), gyn + grp * d.Og * d.L, d.L, cols, d.L, T(1),
                    acc + grp * d.Og * d.K, d.K, par);
        }
    };
    if (!samples_in_parallel(a.N)) {
        std::memset(gw, 0, sizeof(T) * WK);
        for (index_t n = 0; n < a.N; ++n) accumulate(n, gw, true);
        return;
    }
    // Each thread sums its samples into a private copy (no two threads write
    // one element), then the copies are added.
    const int nt = max_threads();
    std::vector<T> parts(std::size_t(nt) * WK, T(0));
#pragma omp parallel num_threads(nt)
    {
        T* acc = parts.data() + std::size_t(thread_id()) * WK;
#pragma omp for schedule(static)
        for (index_t n = 0; n < a.N; ++n) accumulate(n, acc, false);
#pragma omp for schedule(static)
        for (index_t i = 0; i < WK; ++i) {
            T s = 0;
            for (int t = 0; t < nt; ++t) s += parts[std::size_t(t) * WK + i];
            gw[i] = s;
        }
    }
}

#define PCN_INST(T)                                                                     \
    template void conv2d_forward<T>(const T*, const T*, const T*, T*, const ConvArgs&); \
    template void conv2d_backward_data<T>(const T*, const T*, T*, const ConvArgs&);     \
    template void conv2d_backward_weight<T>(const T*, const T*, T*, const ConvArgs&);   \
    template void channel_sum<T>(const T*, T*, index_t, index_t, index_t);              \
    template void add_channel_bias<T>(T*, const T*, index_t, index_t, index_t);
PCN_INST(float)
PCN_INST(double)
#undef PCN_INST

}  // namespace pcn
