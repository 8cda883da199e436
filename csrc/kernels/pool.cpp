// Max and average pooling, forward/backward pairs; one plane per loop
// iteration, so the backward scatter never has two threads on one pixel.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include "core/blas.h"
#include "core/parallel.h"
#include "kernels/pool.h"

namespace pcn {

template <typename T>
void max_pool2d_forward(const T* x, T* y, std::int64_t* argmax, const PoolArgs& p) {
    const index_t HW = p.H * p.W, L = p.OH * p.OW;
    const bool interior = p.ph == 0 && p.pw == 0 && (p.OH - 1) * p.sh + (p.kh - 1) * p.dh < p.H &&
                          (p.OW - 1) * p.sw + (p.kw - 1) * p.dw < p.W;
#pragma omp parallel for schedule(static) if (p.planes * L > 4096)
    for (index_t pl = 0; pl < p.planes; ++pl) {
        const T* in = x + pl * HW;
        T* out = y + pl * L;
        std::int64_t* idx = argmax + pl * L;
        if (interior && p.kh == 2 && p.kw == 2 && p.sh == 2 && p.sw == 2 && p.dh == 1 && p.dw == 1) {
            // The common 2x2/2 window, written out so the compiler vectorises it
            // (same scan order and tie/NaN rule as the general loops).
            // Two passes per row chunk: values and a 32-bit window code (same lane
            // width as float, so the select loop vectorises; with the int64 index
            // in the same loop GCC left it scalar, 4x slower), then the indices.
            const index_t W = p.W, OW = p.OW;
            using Code = std::conditional_t<sizeof(T) == 4, std::int32_t, std::int64_t>;
            const Code cW = Code(W);
            Code code[256];
            for (index_t oh = 0; oh < p.OH; ++oh) {
                const T* __restrict r0 = in + 2 * oh * W;
                const T* __restrict r1 = r0 + W;
                T* __restrict o = out + oh * OW;
                std::int64_t* __restrict id = idx + oh * OW;
                const std::int64_t base = 2 * oh * W;
                for (index_t c0 = 0; c0 < OW; c0 += 256) {
                    const index_t n = std::min<index_t>(256, OW - c0);
#pragma omp simd
                    for (index_t j = 0; j < n; ++j) {
                        const index_t ow = c0 + j;
                        const T a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], d = r1[2 * ow + 1];
                        T m = a;
                        Code k = 0;
                        bool t = (b > m) | (b != b);
                        m = t ? b : m;
                        k = t ? Code(1) : k;
                        t = (c > m) | (c != c);
                        m = t ? c : m;
                        k = t ? cW : k;
                        t = (d > m) | (d != d);
                        m = t ? d : m;
                        k = t ? cW + 1 : k;
                        o[ow] = m;
                        code[j] = k;
                    }
#pragma omp simd
                    for (index_t j = 0; j < n; ++j) id[c0 + j] = base + 2 * (c0 + j) + code[j];
                }
            }
            continue;
        }
        if (interior) {
            // Every window inside the plane: scan the window offsets in the
            // outer loops (row-major, same order and tie rule as below) and run
            // along the output row in the inner one, which vectorises.
            const index_t W = p.W, OW = p.OW, sw = p.sw;
            for (index_t oh = 0; oh < p.OH; ++oh) {
                T* __restrict o = out + oh * OW;
                std::int64_t* __restrict id = idx + oh * OW;
                for (index_t ow = 0; ow < OW; ++ow) {
                    o[ow] = -std::numeric_limits<T>::infinity();
                    id[ow] = oh * p.sh * W + ow * sw;
                }
                for (index_t ki = 0; ki < p.kh; ++ki) {
                    const index_t h = oh * p.sh + ki * p.dh;
                    for (index_t kj = 0; kj < p.kw; ++kj) {
                        const index_t base = h * W + kj * p.dw;
                        const T* __restrict src = in + base;
#pragma omp simd
                        for (index_t ow = 0; ow < OW; ++ow) {
                            const T v = src[ow * sw];
                            const T cur = o[ow];
                            const bool take = (v > cur) | (v != v);
                            o[ow] = take ? v : cur;
                            id[ow] = take ? base + ow * sw : id[ow];
                        }
                    }
                }
            }
            continue;
        }
        for (index_t oh = 0; oh < p.OH; ++oh) {
            index_t hs = oh * p.sh - p.ph;
            index_t he = std::min(hs + (p.kh - 1) * p.dh + 1, p.H);
            if (hs < 0) hs += (-hs + p.dh - 1) / p.dh * p.dh;  // first tap inside the input
            for (index_t ow = 0; ow < p.OW; ++ow) {
                index_t ws = ow * p.sw - p.pw;
                index_t we = std::min(ws + (p.kw - 1) * p.dw + 1, p.W);
                if (ws < 0) ws += (-ws + p.dw - 1) / p.dw * p.dw;
                T best = -std::numeric_limits<T>::infinity();
                // A window lying wholly in the padding (possible with large dilation)
                // has no argmax: -1, which the backward skips.
                std::int64_t bi = (hs < he && ws < we) ? hs * p.W + ws : -1;
                // Branch-free select: on real data the comparison is a coin flip,
                // and mispredicted branches cost more than the loads.
                for (index_t h = hs; h < he; h += p.dh)
                    for (index_t w = ws; w < we; w += p.dw) {
                        const T v = in[h * p.W + w];
                        const bool take = (v > best) | (v != v);
                        best = take ? v : best;
                        bi = take ? h * p.W + w : bi;
                    }
                out[oh * p.OW + ow] = best;
                idx[oh * p.OW + ow] = bi;
            }
        }
    }
}

template <typename T>
void max_pool2d_backward(const T* gy, const std::int64_t* argmax, T* gx, const PoolArgs& p) {
    const index_t HW = p.H * p.W, L = p.OH * p.OW;
#pragma omp parallel for schedule(static) if (p.planes * HW > 4096)
    for (index_t pl = 0; pl < p.planes; ++pl) {
        T* g = gx + pl * HW;
        std::memset(g, 0, sizeof(T) * HW);
        const T* go = gy + pl * L;
        const std::int64_t* idx = argmax + pl * L;
        for (index_t l = 0; l < L; ++l)
            if (idx[l] >= 0) g[idx[l]] += go[l];  // range checked by the binding
    }
}

// torch's divisor rule: with count_include_pad the window is clipped to the
// padded input, otherwise to the real input.
static inline void avg_window(index_t o, index_t s, index_t pad, index_t k, index_t in, index_t& start,
                              index_t& end, index_t& padded_len) {
    start = o * s - pad;
    end = std::min(start + k, in + pad);
    padded_len = end - start;
    start = std::max<index_t>(start, 0);
    end = std::min(end, in);
}

template <typename T>
void avg_pool2d_forward(const T* x, T* y, const PoolArgs& p, bool cip) {
    const index_t HW = p.H * p.W, L = p.OH * p.OW;
#pragma omp parallel for schedule(static) if (p.planes * L > 4096)
    for (index_t pl = 0; pl < p.planes; ++pl) {
        const T* in = x + pl * HW;
        T* out = y + pl * L;
        for (index_t oh = 0; oh < p.OH; ++oh) {
            index_t hs, he, hpad;
            avg_window(oh, p.sh, p.ph, p.kh, p.H, hs, he, hpad);
            for (index_t ow = 0; ow < p.OW; ++ow) {
                index_t ws, we, wpad;
                avg_window(ow, p.sw, p.pw, p.kw, p.W, ws, we, wpad);
                T s = 0;
                for (index_t h = hs; h < he; ++h)
                    for (index_t w = ws; w < we; ++w) s += in[h * p.W + w];
                const index_t cnt = cip ? hpad * wpad : (he - hs) * (we - ws);
                out[oh * p.OW + ow] = cnt > 0 ? s / T(cnt) : T(0);
            }
        }
    }
}

template <typename T>
void avg_pool2d_backward(const T* gy, T* gx, const PoolArgs& p, bool cip) {
    const index_t HW = p.H * p.W, L = p.OH * p.OW;
#pragma omp parallel for schedule(static) if (p.planes * HW > 4096)
    for (index_t pl = 0; pl < p.planes; ++pl) {
        T* g = gx + pl * HW;
        std::memset(g, 0, sizeof(T) * HW);
        const T* go = gy + pl * L;
        for (index_t oh = 0; oh < p.OH; ++oh) {
            index_t hs, he, hpad;
            avg_window(oh, p.sh, p.ph, p.kh, p.H, hs, he, hpad);
            for (index_t ow = 0; ow < p.OW; ++ow) {
                index_t ws, we, wpad;
                avg_window(ow, p.sw, p.pw, p.kw, p.W, ws, we, wpad);
                const index_t cnt = cip ? hpad * wpad : (he - hs) * (we - ws);
                if (cnt <= 0) continue;
                const T v = go[oh * p.OW + ow] / T(cnt);
                for (index_t h = hs; h < he; ++h)
                    for (index_t w = ws; w < we; ++w) g[h * p.W + w] += v;
            }
        }
    }
}

#define PCN_INST(T)                                                                                 \
    template void max_pool2d_forward<T>(const T*, T*, std::int64_t*, const PoolArgs&);              \
    template void max_pool2d_backward<T>(const T*, const std::int64_t*, T*, const PoolArgs&);       \
    template void avg_pool2d_forward<T>(const T*, T*, const PoolArgs&, bool);                       \
    template void avg_pool2d_backward<T>(const T*, T*, const PoolArgs&, bool);
PCN_INST(float)
PCN_INST(double)
#undef PCN_INST

}  // namespace pcn
