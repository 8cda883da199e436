// LSTM forward and backward through time. The input projection of every step is
// one GEMM over all N*T rows before the recurrence, the recurrent projection one
// GEMM per step over the whole batch (rows strided by T in the batch-first
// layout, so nothing is transposed), and the gate nonlinearities and the cell
// update one fused pass per step. In the backward the pre-activation gradients of
// all steps are kept, so the input and weight gradients are again single GEMMs
// after the recurrence. Every output element is computed by one thread in a fixed
// order (GEMMs split over M/N, never K; the passes split over samples), so the
// bits do not depend on the thread count.
#include <cmath>
#include <vector>

#include "core/blas.h"
#include "core/parallel.h"
#include "kernels/conv.h"
#include "kernels/lstm.h"

namespace pcn {

namespace {

template <typename T>
inline T sigmoid(T v) {
    // exp of a non-positive argument only: no overflow for large |v|
    if (v >= T(0)) return T(1) / (T(1) + std::exp(-v));
    const T e = std::exp(v);
    return e / (T(1) + e);
}

// One pass per step over the batch is cheap (4H values a sample): spread it over
// the threads only when there is enough of it.
constexpr index_t kParallelStep = 16384;

}  // namespace

template <typename T>
void lstm_forward(const T* x, const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh, T* h, T* gates, T* c,
                  index_t N, index_t Tn, index_t I, index_t H) {
    const index_t G = 4 * H;
    // gates <- x W_ih^T for all N*T rows at once, then both biases
    gemm<T>(false, true, N * Tn, G, I, T(1), x, I, w_ih, I, T(0), gates, G, true);
    if (b_ih) add_channel_bias(gates, b_ih, N * Tn, G, 1);
    if (b_hh) add_channel_bias(gates, b_hh, N * Tn, G, 1);
    for (index_t t = 0; t < Tn; ++t) {
        // step t's rows: gates[n, t] += h[n, t-1] W_hh^T (the zero state adds nothing at t = 0)
        if (t > 0) gemm<T>(false, true, N, G, H, T(1), h + (t - 1) * H, Tn * H, w_hh, H, T(1), gates + t * G, Tn * G, true);
#pragma omp parallel for schedule(static) if (N * G > kParallelStep)
        for (index_t n = 0; n < N; ++n) {
            T* a = gates + (n * Tn + t) * G;
            T* cn = c + (n * Tn + t) * H;
            T* hn = h + (n * Tn + t) * H;
            const T* cp = t > 0 ? cn - H : nullptr;
            for (index_t j = 0; j < H; ++j) {
                const T ig = sigmoid(a[j]), fg = sigmoid(a[H + j]), gg = std::tanh(a[2 * H + j]),
                        og = sigmoid(a[3 * H + j]);
                a[j] = ig;
                a[H + j] = fg;
                a[2 * H + j] = gg;
                a[3 * H + j] = og;
                const T cv = (cp ? fg * cp[j] : T(0)) + ig * gg;
                cn[j] = cv;
                hn[j] = og * std::tanh(cv);
            }
        }
    }
}

template <typename T>
void lstm_backward(const T* gh, const T* x, const T* w_ih, const T* w_hh, const T* h, const T* gates, const T* c,
                   T* gx, T* gw_ih, T* gw_hh, T* gb, index_t N, index_t Tn, index_t I, index_t H) {
    const index_t G = 4 * H;
    std::vector<T> da(std::size_t(N * Tn * G));  // pre-activation gradients of every step
    std::vector<T> dh(std::size_t(N * H), T(0));  // dL/dh_t from step t+1 (through W_hh)
    std::vector<T> dc(std::size_t(N * H), T(0));  // dL/dc_t from step t+1 (through the forget gate)
    T* dap = da.data();
    T* dhp = dh.data();
    T* dcp = dc.data();
    for (index_t t = Tn - 1; t >= 0; --t) {
#pragma omp parallel for schedule(static) if (N * G > kParallelStep)
        for (index_t n = 0; n < N; ++n) {
            const T* a = gates + (n * Tn + t) * G;
            const T* cn = c + (n * Tn + t) * H;
            const T* cp = t > 0 ? cn - H : nullptr;
            const T* g_out = gh + (n * Tn + t) * H;
            T* d = dap + (n * Tn + t) * G;
            T* dhn = dhp + n * H;
            T* dcn = dcp + n * H;
            for (index_t j = 0; j < H; ++j) {
                const T ig = a[j], fg = a[H + j], gg = a[2 * H + j], og = a[3 * H + j];
                const T tc = std::tanh(cn[j]);
                const T dhv = g_out[j] + dhn[j];
                const T dcv = dhv * og * (T(1) - tc * tc) + dcn[j];
                d[j] = dcv * gg * ig * (T(1) - ig);
                d[H + j] = cp ? dcv * cp[j] * fg * (T(1) - fg) : T(0);
                d[2 * H + j] = dcv * ig * (T(1) - gg * gg);
                d[3 * H + j] = dhv * tc * og * (T(1) - og);
                dcn[j] = dcv * fg;
            }
        }
        // dL/dh_{t-1} = da_t W_hh
        if (t > 0) gemm<T>(false, false, N, H, G, T(1), dap + t * G, Tn * G, w_hh, H, T(0), dhp, H, true);
    }
    if (gx) gemm<T>(false, false, N * Tn, I, G, T(1), dap, G, w_ih, I, T(0), gx, I, true);
    if (gw_ih) gemm<T>(true, false, G, I, N * Tn, T(1), dap, G, x, I, T(0), gw_ih, I, true);
    if (gw_hh) {
        // sum_t da_t^T h_{t-1} as one GEMM over N*T rows: h shifted one step (zero at t = 0)
        std::vector<T> hp(std::size_t(N * Tn * H), T(0));
        for (index_t n = 0; n < N; ++n)
            for (index_t t = 1; t < Tn; ++t)
                for (index_t j = 0; j < H; ++j) hp[(n * Tn + t) * H + j] = h[(n * Tn + t - 1) * H + j];
        gemm<T>(true, false, G, H, N * Tn, T(1), dap, G, hp.data(), H, T(0), gw_hh, H, true);
    }
    if (gb) channel_sum(dap, gb, N * Tn, G, 1);
}

#define PCN_INST(T)                                                                                             \
    template void lstm_forward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*, index_t, index_t, \
                                  index_t, index_t);                                                            \
    template void lstm_backward<T>(const T*, const T*, const T*, const T*, const T*, const T*, const T*, T*, T*,  \
                                   T*, T*, index_t, index_t, index_t, index_t);
PCN_INST(float)
PCN_INST(double)
#undef PCN_INST

}  // namespace pcn
