// im2col / col2im (Caffe's layout, torch's row order), with the valid output
// range of each row computed once so the inner loop has no bounds tests.
#include <algorithm>
#include <cstring>
#include "core/blas.h"
#include "core/parallel.h"
#include "kernels/im2col.h"

namespace pcn {

// Output columns ow in [lo, hi) read an input column inside [0, W).
static inline void valid_range(index_t off, index_t stride, index_t W, index_t OW, index_t& lo, index_t& hi) {
    // iw = ow*stride + off must satisfy 0 <= iw < W
    lo = off >= 0 ? 0 : (-off + stride - 1) / stride;
    hi = off >= W ? 0 : (W - 1 - off) / stride + 1;
    lo = std::min(lo, OW);
    hi = std::max(lo, std::min(hi, OW));
}

// Two-stage im2col for vertical stride 1 and dilation 1 (most convolutions).
// The direct version copies C*kh*kw*OH short segments of OW values; here stage 1
// builds the kw horizontally shifted copies of every input row, (C, kw, H, OW),
// in C*kw*H segments, and stage 2 finds each output row of col as ONE
// contiguous run of that buffer (rows ih = oh + ki - pt for consecutive oh), so
// it is a single block copy. For LeNet's 10x10 outputs this is ~3x fewer loop trips.
template <typename T>
static void im2col_rows(const T* img, const Geom& g, T* col, index_t ldcol, bool parallel) {
    const index_t HO = g.H * g.OW;
    T* rows = scratch<T>(2, std::size_t(g.C * g.kw * HO));
#pragma omp parallel for schedule(static) if (parallel && g.C * g.kw > 1)
    for (index_t ck = 0; ck < g.C * g.kw; ++ck) {
        const index_t c = ck / g.kw, kj = ck % g.kw;
        const T* plane = img + c * g.H * g.W;
        T* dst = rows + ck * HO;
        const index_t woff = kj * g.dw - g.pl;
        index_t lo, hi;
        valid_range(woff, g.sw, g.W, g.OW, lo, hi);
        for (index_t h = 0; h < g.H; ++h) {
            T* o = dst + h * g.OW;
            const T* src = plane + h * g.W;
            for (index_t ow = 0; ow < lo; ++ow) o[ow] = T(0);
            if (g.sw == 1) {
#pragma omp simd
                for (index_t ow = lo; ow < hi; ++ow) o[ow] = src[ow + woff];
            } else {
                for (index_t ow = lo; ow < hi; ++ow) o[ow] = src[ow * g.sw + woff];
            }
            for (index_t ow = hi; ow < g.OW; ++ow) o[ow] = T(0);
        }
    }
    const index_t nrows = g.C * g.kh * g.kw;
#pragma omp parallel for schedule(static) if (parallel && nrows > 1)
    for (index_t r = 0; r < nrows; ++r) {
        const index_t c = r / (g.kh * g.kw), ki = (r / g.kw) % g.kh, kj = r % g.kw;
        const index_t off = ki - g.pt;  // ih = oh + off
        const index_t lo = std::min(std::max<index_t>(0, -off), g.OH);
        const index_t hi = std::max(lo, std::min(g.OH, g.H - off));
        T* out = col + r * ldcol;
        const T* src = rows + (c * g.kw + kj) * HO + (lo + off) * g.OW;
        if (lo > 0) std::memset(out, 0, sizeof(T) * lo * g.OW);
        if (hi > lo) std::memcpy(out + lo * g.OW, src, sizeof(T) * (hi - lo) * g.OW);
        if (hi < g.OH) std::memset(out + hi * g.OW, 0, sizeof(T) * (g.OH - hi) * g.OW);
    }
}

template <typename T>
void im2col(const T* img, const Geom& g, T* col, index_t ldcol, bool parallel) {
    if (g.sh == 1 && g.dh == 1 && g.kh > 1) {
        im2col_rows(img, g, col, ldcol, parallel);
        return;
    }
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

// The reverse of im2col_rows: stage A sums each col row into the shifted-rows
// buffer with one contiguous add; stage B adds the shifted rows into the image.
template <typename T>
static void col2im_rows(const T* col, const Geom& g, index_t ldcol, T* img, bool parallel) {
    const index_t HO = g.H * g.OW;
    T* rows = scratch<T>(2, std::size_t(g.C * g.kw * HO));
    // Stage A: one (c, kj) buffer per iteration; the kh rows that feed it are summed in turn.
#pragma omp parallel for schedule(static) if (parallel && g.C * g.kw > 1)
    for (index_t ck = 0; ck < g.C * g.kw; ++ck) {
        const index_t c = ck / g.kw, kj = ck % g.kw;
        T* dst = rows + ck * HO;
        std::memset(dst, 0, sizeof(T) * HO);
        for (index_t ki = 0; ki < g.kh; ++ki) {
            const index_t off = ki - g.pt;
            const index_t lo = std::min(std::max<index_t>(0, -off), g.OH);
            const index_t hi = std::max(lo, std::min(g.OH, g.H - off));
            const T* src = col + ((c * g.kh + ki) * g.kw + kj) * ldcol + lo * g.OW;
            T* d = dst + (lo + off) * g.OW;
            const index_t n = (hi - lo) * g.OW;
#pragma omp simd
            for (index_t i = 0; i < n; ++i) d[i] += src[i];
        }
    }
    // Stage B: one channel per iteration (its plane is written by no other).
#pragma omp parallel for schedule(static) if (parallel && g.C > 1)
    for (index_t c = 0; c < g.C; ++c) {
        T* plane = img + c * g.H * g.W;
        for (index_t kj = 0; kj < g.kw; ++kj) {
            const T* src = rows + (c * g.kw + kj) * HO;
            const index_t woff = kj * g.dw - g.pl;
            index_t lo, hi;
            valid_range(woff, g.sw, g.W, g.OW, lo, hi);
            for (index_t h = 0; h < g.H; ++h) {
                T* dst = plane + h * g.W;
                const T* s = src + h * g.OW;
                if (g.sw == 1) {
#pragma omp simd
                    for (index_t ow = lo; ow < hi; ++ow) dst[ow + woff] += s[ow];
                } else {
                    for (index_t ow = lo; ow < hi; ++ow) dst[ow * g.sw + woff] += s[ow];
                }
            }
        }
    }
}

template <typename T>
void col2im(const T* col, const Geom& g, index_t ldcol, T* img, bool parallel) {
    if (g.sh == 1 && g.dh == 1 && g.kh > 1) {
        col2im_rows(col, g, ldcol, img, parallel);
        return;
    }
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

template <typename T>
void unfold(const T* x, index_t N, const Geom& g, T* y) {
    const index_t R = g.C * g.kh * g.kw, L = g.OH * g.OW;
    const bool big = N * R * L > 65536, across = N >= max_threads();
#pragma omp parallel for schedule(static) if (big && across && N > 1)
    for (index_t n = 0; n < N; ++n) im2col(x + n * g.C * g.H * g.W, g, y + n * R * L, L, big && !across);
}

template <typename T>
void fold(const T* cols, index_t N, const Geom& g, T* y) {
    const index_t R = g.C * g.kh * g.kw, L = g.OH * g.OW, img = g.C * g.H * g.W;
    std::fill(y, y + N * img, T(0));
    const bool big = N * R * L > 65536, across = N >= max_threads();
#pragma omp parallel for schedule(static) if (big && across && N > 1)
    for (index_t n = 0; n < N; ++n) col2im(cols + n * R * L, g, L, y + n * img, big && !across);
}

template void unfold<float>(const float*, index_t, const Geom&, float*);
template void unfold<double>(const double*, index_t, const Geom&, double*);
template void fold<float>(const float*, index_t, const Geom&, float*);
template void fold<double>(const double*, index_t, const Geom&, double*);
template void im2col<float>(const float*, const Geom&, float*, index_t, bool);
template void im2col<double>(const double*, const Geom&, double*, index_t, bool);
template void col2im<float>(const float*, const Geom&, index_t, float*, bool);
template void col2im<double>(const double*, const Geom&, index_t, double*, bool);

}  // namespace pcn
