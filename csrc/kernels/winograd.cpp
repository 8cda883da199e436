// Winograd F(m x m, 3 x 3): see winograd.h. Here: when it applies, the kernel
// transform U = G g G^T (in double, padded to the target's lanes), the final
// G^T dU G of the weight gradient, and the call into the target's copy of
// winograd_body.h (conv_<isa>.cpp), which does the transforms and GEMMs.
#include "kernels/winograd.h"

#include <algorithm>
#include <vector>

#include "core/blas.h"
#include "core/cpu.h"
#include "core/parallel.h"
#include "core/switches.h"
#include "kernels/conv_isa.h"

namespace pcn {

namespace {

#include "kernels/winograd_transforms.h"

bool is_3x3_s1(const ConvArgs& a) {
    const Geom& g = a.g;
    return a.groups == 1 && g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.dh == 1 && g.dw == 1;
}

// Winograd pays where the GEMMs are wide enough: at least 16 channels on both
// sides (measured on the seed shapes: Keras conv2, CIFAR conv2/conv3; the 1- and
// 3-channel first layers stay direct) and maps of at least 3 x 3 (one F(4x4) tile
// there costs 36 products per channel pair against the direct form's 81: airbench's
// last layer ran 1.5-2x faster so).
bool applies(const ConvArgs& a, index_t cin, index_t cout, int m) {
    if (!is_3x3_s1(a)) return false;
    if (m) return true;  // forced (tests)
    return switch_on(Switch::winograd) && cin >= 16 && cout >= 16 && a.g.OH >= 3 && a.g.OW >= 3;
}

// The tile with fewer products over the whole map (tiles x (m+2)^2; the batched
// products are 70% of the time): F(4x4) on 7 x 7 maps needs 4 x 36, F(2x2) 16 x 16.
// Ties (5 x 5, 6 x 6) go to F(2x2), the more exact one.
int tile_size(int m, index_t OH, index_t OW) {
    if (m == 2 || m == 4) return m;
    const auto products = [&](index_t t) { return ((OH + t - 1) / t) * ((OW + t - 1) / t) * (t + 2) * (t + 2); };
    return products(4) < products(2) ? 4 : 2;
}

// U (A2, Cp, Op) = G g G^T of the filters wk(o, c) (3x3, row-major; rotated by 180
// degrees when `rotate`), zero past O and C: for each tap a, the (C, O) matrix the
// batched products read one row of channel c at a time, in panels (panel_index).
template <int M, typename Wk>
void kernel_transform(index_t O, index_t C, index_t Op, index_t Cp, Wk&& wk, float* U, bool rotate = false) {
    const index_t lanes = isa_lanes(active_isa());
    constexpr int A = Wino<M>::A, A2 = A * A;
    std::fill(U, U + index_t(A2) * Op * Cp, 0.0f);
    // Threads split the channels c; each c's taps are written a tap at a time, so the
    // stores run along a panel's contiguous o (one filter's 36 taps, (Cp, Op) apart,
    // fell into one L1 set: this took 8% of a 32 -> 64-channel forward pass so).
    const bool par = max_threads() > 1 && !in_parallel() && O * C >= 256;
#pragma omp parallel if (par)
    {
        std::vector<float> ub(std::size_t(A2) * std::size_t(O));
        std::vector<index_t> base(static_cast<std::size_t>(O)), width(static_cast<std::size_t>(O));
        for (index_t o = 0; o < O; ++o) {  // panel_index(c, o) = base[o] + c * width[o], without its divisions
            base[std::size_t(o)] = panel_index(0, o, Cp, Op, lanes);
            width[std::size_t(o)] = panel_index(1, o, Cp, Op, lanes) - base[std::size_t(o)];
        }
        double g[9], t[A * 3], u[A2];
#pragma omp for schedule(static)
        for (index_t c = 0; c < C; ++c) {
            for (index_t o = 0; o < O; ++o) {
                const float* src = wk(o, c);
                for (int i = 0; i < 9; ++i) g[i] = src[rotate ? 8 - i : i];
                for (int j = 0; j < 3; ++j) Wino<M>::g(g + j, 3, t + j, 3);        // columns: A x 3
                for (int i = 0; i < A; ++i) Wino<M>::g(t + i * 3, 1, u + i * A, 1);  // rows: A x A
                for (int a = 0; a < A2; ++a) ub[std::size_t(a * O + o)] = float(u[a]);
            }
            for (int a = 0; a < A2; ++a) {
                float* dst = U + index_t(a) * Cp * Op;
                for (index_t o = 0; o < O; ++o)
                    dst[base[std::size_t(o)] + c * width[std::size_t(o)]] = ub[std::size_t(a * O + o)];
            }
        }
    }
}

void isa_forward(int m, const float* x, index_t N, index_t C, index_t H, index_t W, index_t pt, index_t pl,
                 const float* U, index_t O, const float* bias, float* y, index_t OH, index_t OW) {
    switch (active_isa()) {
        case Isa::avx512: return avx512::wino_forward(m, x, N, C, H, W, pt, pl, U, O, bias, y, OH, OW);
        case Isa::avx2: return avx2::wino_forward(m, x, N, C, H, W, pt, pl, U, O, bias, y, OH, OW);
        case Isa::baseline: return baseline::wino_forward(m, x, N, C, H, W, pt, pl, U, O, bias, y, OH, OW);
    }
}

// The forward form: y (N, O, OH, OW) = x (N, C, H, W) correlated with the filters wk(o, c).
template <typename Wk>
void forward_form(int m, const float* x, index_t N, index_t C, index_t H, index_t W, index_t pt, index_t pl,
                  index_t O, Wk&& wk, const float* bias, float* y, index_t OH, index_t OW) {
    const index_t lanes = isa_lanes(active_isa());
    const index_t Op = (O + lanes - 1) / lanes * lanes, Cp = (C + lanes - 1) / lanes * lanes;
    const int A2 = (m + 2) * (m + 2);
    float* U = scratch<float>(3, std::size_t(A2) * Op * Cp);
    if (m == 4)
        kernel_transform<4>(O, C, Op, Cp, wk, U);
    else
        kernel_transform<2>(O, C, Op, Cp, wk, U);
    isa_forward(m, x, N, C, H, W, pt, pl, U, O, bias, y, OH, OW);
}

}  // namespace

bool conv2d_forward_winograd(const float* x, const float* w, const float* bias, float* y, const ConvArgs& a, int m) {
    const Geom& g = a.g;
    if (!applies(a, g.C, a.O, m)) return false;
    m = tile_size(m, g.OH, g.OW);
    forward_form(m, x, a.N, g.C, g.H, g.W, g.pt, g.pl, a.O, [&](index_t o, index_t c) { return w + (o * g.C + c) * 9; },
                 bias, y, g.OH, g.OW);
    count_call(Switch::winograd);
    return true;
}

bool conv2d_backward_winograd(const float* gy, const float* x, const float* w, float* gx, float* gw, float* gb,
                              const ConvArgs& a, int m) {
    const Geom& g = a.g;
    const index_t C = g.C, O = a.O;
    // The data gradient is the forward form on gy with the kernel rotated 180 degrees
    // and its channels swapped, padded by 2 - p on each side: so at most 2 of padding
    // (beyond, the data gradient crops; the direct path handles it).
    const index_t pb = g.OH + 2 - g.H - g.pt, pr = g.OW + 2 - g.W - g.pl;  // the bottom / right pads
    if (gx && (g.pt > 2 || g.pl > 2 || pb > 2 || pr > 2 || pb < 0 || pr < 0)) return false;
    if (gx && !applies(a, O, C, m)) return false;
    if (gw && !applies(a, C, O, m)) return false;
    if (!gx && !gw) return false;
    m = tile_size(m, std::min(g.H, g.OH), std::min(g.W, g.OW));
    const index_t lanes = isa_lanes(active_isa());
    const index_t Op = (O + lanes - 1) / lanes * lanes, Cp = (C + lanes - 1) / lanes * lanes;
    const int A = m + 2, A2 = A * A;
    const index_t UO = index_t(A2) * Op * Cp;
    const WinoBackPlan plan = wino_backward_plan(m, a.N, g.H, g.W, g.pt, g.pl, g.OH, g.OW, Cp, Op, gx, gw);
    const index_t parts = gw ? plan.parts : 0;
    // scratch 3: [the data gradient's kernel (A2, Cp, Op) | dU parts]
    float* buf = scratch<float>(3, std::size_t((gx ? UO : 0) + parts * UO));
    float* Ud = gx ? buf : nullptr;
    float* dU = gw ? buf + (gx ? UO : 0) : nullptr;
    if (gx) {
        auto wk = [&](index_t c, index_t o) { return w + (o * C + c) * 9; };  // rotated while transformed
        if (m == 4)
            kernel_transform<4>(C, O, Cp, Op, wk, Ud, true);
        else
            kernel_transform<2>(C, O, Cp, Op, wk, Ud, true);
    }
    if (dU) std::fill(dU, dU + parts * UO, 0.0f);
    std::vector<double> gbs(gb ? std::size_t(O) : 0, 0.0);
    double* gbp = gb ? gbs.data() : nullptr;
    switch (active_isa()) {
        case Isa::avx512:
            avx512::wino_backward(m, gy, x, a.N, C, g.H, g.W, g.pt, g.pl, O, g.OH, g.OW, Ud, gx, dU, plan, gbp);
            break;
        case Isa::avx2:
            avx2::wino_backward(m, gy, x, a.N, C, g.H, g.W, g.pt, g.pl, O, g.OH, g.OW, Ud, gx, dU, plan, gbp);
            break;
        case Isa::baseline:
            baseline::wino_backward(m, gy, x, a.N, C, g.H, g.W, g.pt, g.pl, O, g.OH, g.OW, Ud, gx, dU, plan, gbp);
            break;
    }
    for (index_t o = 0; gb && o < O; ++o) gb[o] = float(gbs[std::size_t(o)]);
    if (gx) count_call(Switch::winograd);
    if (!gw) return true;
    // gw[o][c] = G^T dU G, dU's parts added in part order (the same bits whichever
    // thread takes o). Threads split the filters in blocks of kOB; a block reads its
    // rows of each tap and part as one run (kOB x Cp floats when the channels fit a
    // block), not one (o, c) at a time: its 36 values, (Op, Cp) apart, fell into one L1 set.
    constexpr index_t kOB = 8, kCB = 64;
    const bool par = max_threads() > 1 && !in_parallel() && UO * parts >= 65536;
#pragma omp parallel if (par)
    {
        std::vector<float> su(std::size_t(A2 * kOB * kCB));
        double u[64], t[24], k[9];
#pragma omp for schedule(static)
        for (index_t o0 = 0; o0 < O; o0 += kOB) {
            const index_t on = std::min(kOB, O - o0);
            for (index_t c0 = 0; c0 < C; c0 += kCB) {
                const index_t cn = std::min(kCB, C - c0);
                for (int i = 0; i < A2; ++i)
                    for (index_t oo = 0; oo < on; ++oo) {
                        float* row = su.data() + (i * kOB + oo) * kCB;
                        const float* src = dU + (index_t(i) * Op + o0 + oo) * Cp + c0;
                        std::copy(src, src + cn, row);
                        for (index_t p = 1; p < parts; ++p) {
                            const float* sp = src + p * UO;
#pragma omp simd
                            for (index_t c = 0; c < cn; ++c) row[c] += sp[c];
                        }
                    }
                for (index_t oo = 0; oo < on; ++oo)
                    for (index_t c = 0; c < cn; ++c) {
                        for (int i = 0; i < A2; ++i) u[i] = su[std::size_t((i * kOB + oo) * kCB + c)];
                        if (m == 4) {
                            for (int j = 0; j < A; ++j) Wino<4>::gt(u + j, A, t + j, A);        // columns: 3 x A
                            for (int i = 0; i < 3; ++i) Wino<4>::gt(t + i * A, 1, k + i * 3, 1);  // rows: 3 x 3
                        } else {
                            for (int j = 0; j < A; ++j) Wino<2>::gt(u + j, A, t + j, A);
                            for (int i = 0; i < 3; ++i) Wino<2>::gt(t + i * A, 1, k + i * 3, 1);
                        }
                        for (int i = 0; i < 9; ++i) gw[((o0 + oo) * C + c0 + c) * 9 + i] = float(k[i]);
                    }
            }
        }
    }
    count_call(Switch::winograd);
    return true;
}

}  // namespace pcn
