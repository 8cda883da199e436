// Max and average pooling, forward/backward pairs; one plane per loop
// iteration, so the backward scatter never has two threads on one pixel.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include "pool.h"

namespace pcn {

template <typename T>
void max_pool2d_forward(const T* x, T* y, std::int64_t* argmax, const PoolArgs& p) {
    const index_t HW = p.H * p.W, L = p.OH * p.OW;
#pragma omp parallel for schedule(static) if (p.planes * L > 4096)
    for (index_t pl = 0; pl < p.planes; ++pl) {
        const T* in = x + pl * HW;
        T* out = y + pl * L;
        std::int64_t* idx = argmax + pl * L;
        for (index_t oh = 0; oh < p.OH; ++oh) {
            index_t hs = oh * p.sh - p.ph;
            index_t he = std::min(hs + (p.kh - 1) * p.dh + 1, p.H);
            while (hs < 0) hs += p.dh;
            for (index_t ow = 0; ow < p.OW; ++ow) {
                index_t ws = ow * p.sw - p.pw;
                index_t we = std::min(ws + (p.kw - 1) * p.dw + 1, p.W);
                while (ws < 0) ws += p.dw;
                T best = -std::numeric_limits<T>::infinity();
                // A window lying wholly in the padding (possible with large dilation)
                // has no argmax: -1, which the backward skips.
                std::int64_t bi = (hs < he && ws < we) ? hs * p.W + ws : -1;
                for (index_t h = hs; h < he; h += p.dh)
                    for (index_t w = ws; w < we; w += p.dw) {
                        const T v = in[h * p.W + w];
                        if (v > best || std::isnan(v)) {
                            best = v;
                            bi = h * p.W + w;
                        }
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
