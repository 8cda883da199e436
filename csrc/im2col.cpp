// im2col / col2im (Caffe's layout, torch's row order), with the valid output
// range of each row computed once so the inner loop has no bounds tests.
#include <algorithm>
#include <cstring>
#include "im2col.h"

namespace pcn {

// Output columns ow in [lo, hi) read an input column inside [0, W).
static inline void valid_range(index_t off, index_t stride, index_t W, index_t OW, index_t& lo, index_t& hi) {
    // iw = ow*stride + off must satisfy 0 <= iw < W
    lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
    hi = off >= W ? 0 : (W - 1 - off) / stride + 1;
    lo = std::min(lo, OW);
    hi = std::max(lo, std::min(hi, OW));
}

template <typename T>
void im2col(const T* img, const Geom& g, T* col, index_t ldcol, bool parallel) {
    const index_t rows = g.C * g.kh * g.kw;
#pragma omp parallel for schedule(static) if (parallel && rows > 1)
    for (index_t r = 0; r < rows; ++r) {
        const index_t c = r / (g.kh * g.kw), ki = (r / g.kw) % g.kh, kj = r % g.kw;
        const T* plane = img + c * g.H * g.W;
        T* out = col + r * ldcol;
        const index_t woff = kj * g.dw - g.pl;
        index_t lo, hi;
        valid_range(woff, g.sw, g.W, g.OW, lo, hi);
        for (index_t oh = 0; oh < g.OH; ++oh) {
            T* o = out + oh * g.OW;
            const index_t ih = oh * g.sh - g.pt + ki * g.dh;
            if (ih < 0 || ih >= g.H) {
                std::memset(o, 0, sizeof(T) * g.OW);
                continue;
            }
            const T* src = plane + ih * g.W + woff;
            for (index_t ow = 0; ow < lo; ++ow) o[ow] = T(0);
            if (g.sw == 1) {  // rows are short (LeNet: 10-28): an inline loop beats memcpy calls
#pragma omp simd
                for (index_t ow = lo; ow < hi; ++ow) o[ow] = src[ow];
            } else {
                for (index_t ow = lo; ow < hi; ++ow) o[ow] = src[ow * g.sw];
            }
            for (index_t ow = hi; ow < g.OW; ++ow) o[ow] = T(0);
        }
    }
}

template <typename T>
void col2im(const T* col, const Geom& g, index_t ldcol, T* img, bool parallel) {
    const index_t kk = g.kh * g.kw;
    // Parallel over channels: every channel owns its plane, so no two threads add to one pixel.
#pragma omp parallel for schedule(static) if (parallel && g.C > 1)
    for (index_t c = 0; c < g.C; ++c) {
        T* plane = img + c * g.H * g.W;
        for (index_t k = 0; k < kk; ++k) {
            const index_t ki = k / g.kw, kj = k % g.kw;
            const T* in = col + (c * kk + k) * ldcol;
            const index_t woff = kj * g.dw - g.pl;
            index_t lo, hi;
            valid_range(woff, g.sw, g.W, g.OW, lo, hi);
            for (index_t oh = 0; oh < g.OH; ++oh) {
                const index_t ih = oh * g.sh - g.pt + ki * g.dh;
                if (ih < 0 || ih >= g.H) continue;
                T* dst = plane + ih * g.W + woff;
                const T* src = in + oh * g.OW;
                if (g.sw == 1) {
#pragma omp simd
                    for (index_t ow = lo; ow < hi; ++ow) dst[ow] += src[ow];
                } else {
                    for (index_t ow = lo; ow < hi; ++ow) dst[ow * g.sw] += src[ow];
                }
            }
        }
    }
}

template void im2col<float>(const float*, const Geom&, float*, index_t, bool);
template void im2col<double>(const double*, const Geom&, double*, index_t, bool);
template void col2im<float>(const float*, const Geom&, index_t, float*, bool);
template void col2im<double>(const double*, const Geom&, index_t, double*, bool);

}  // namespace pcn
