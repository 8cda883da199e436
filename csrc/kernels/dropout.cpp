// Dropout masks from a counter-based hash instead of NumPy's generator: drawing
// 400k floats with Generator.random took 0.66 ms of the Keras CNN's 0.76 ms
// dropout forward; this is one pass that draws, selects and scales.
//
// bits(key, i) = triple32(triple32(lo32(i) ^ k0) ^ hi32(i) ^ k1), k0/k1 the halves of
// the key. triple32 (C. Wellons' hash-prospector, bias 0.0209) is a bijection of
// 32-bit words with full avalanche, so successive counters give independent-looking
// words; the second round folds in the high counter bits and the rest of the key.
#include "core/cpu.h"
#include "core/parallel.h"
#include "kernels/dropout.h"

#include <algorithm>

namespace pcn {

namespace {

[[gnu::always_inline]] inline std::uint32_t triple32(std::uint32_t x) {
    x ^= x >> 17;
    x *= 0xed5ad4bbu;
    x ^= x >> 11;
    x *= 0xac4c1b51u;
    x ^= x >> 15;
    x *= 0x31848babu;
    x ^= x >> 14;
    return x;
}

[[gnu::always_inline]] inline std::uint32_t bits_of(std::uint32_t k0, std::uint32_t k1, std::uint64_t i) {
    return triple32(triple32(std::uint32_t(i) ^ k0) ^ std::uint32_t(i >> 32) ^ k1);
}

template <typename T>
[[gnu::always_inline]] inline void forward_span(const T* __restrict x, T* __restrict y, std::uint8_t* __restrict mask,
                                                index_t s, index_t e, std::uint32_t thr, T scale, std::uint32_t k0,
                                                std::uint32_t k1, std::uint64_t off) {
#pragma omp simd
    for (index_t i = s; i < e; ++i) {
        const bool keep = bits_of(k0, k1, off + std::uint64_t(i)) >= thr;
        const T v = x[i] * scale;  // loaded unconditionally: a select, not a branch
        y[i] = keep ? v : T(0);
        mask[i] = std::uint8_t(keep);
    }
}

// Integer hashing vectorises 2x wider with AVX2 and 4x with AVX-512 (SSE2 has no
// 32-bit lane multiply); the results are identical bit for bit on every target, so
// the copy of the target in use runs.
#ifdef PCN_X86_64
template <typename T>
__attribute__((target("avx512f,avx512bw,avx512vl"))) void forward_span_avx512(const T* x, T* y, std::uint8_t* mask,
                                                                              index_t s, index_t e, std::uint32_t thr,
                                                                              T scale, std::uint32_t k0,
                                                                              std::uint32_t k1, std::uint64_t off) {
    forward_span(x, y, mask, s, e, thr, scale, k0, k1, off);
}
template <typename T>
__attribute__((target("avx2"))) void forward_span_avx2(const T* x, T* y, std::uint8_t* mask, index_t s, index_t e,
                                                      std::uint32_t thr, T scale, std::uint32_t k0,
                                                      std::uint32_t k1, std::uint64_t off) {
    forward_span(x, y, mask, s, e, thr, scale, k0, k1, off);
}
#endif

}  // namespace

std::uint32_t dropout_bits(std::uint64_t key, std::uint64_t i) {
    return bits_of(std::uint32_t(key), std::uint32_t(key >> 32), i);
}

template <typename T>
void dropout_forward(const T* x, T* y, std::uint8_t* mask, index_t n, std::uint32_t threshold, T scale,
                     std::uint64_t key, std::uint64_t offset) {
    const std::uint32_t k0 = std::uint32_t(key), k1 = std::uint32_t(key >> 32);
    const Isa isa = active_isa();
    chunked(n, 4, [&](index_t s, index_t e) {
#ifdef PCN_X86_64
        if (isa == Isa::avx512) return forward_span_avx512(x, y, mask, s, e, threshold, scale, k0, k1, offset);
        if (isa == Isa::avx2) return forward_span_avx2(x, y, mask, s, e, threshold, scale, k0, k1, offset);
#endif
        forward_span(x, y, mask, s, e, threshold, scale, k0, k1, offset);
    });
}

template <typename T>
void dropout_backward(const T* __restrict gy, const std::uint8_t* __restrict mask, T* __restrict gx, index_t n,
                      T scale) {
    chunked(n, 4, [=](index_t s, index_t e) {
#pragma omp simd
        for (index_t i = s; i < e; ++i) {
            const T v = gy[i] * scale;
            gx[i] = mask[i] ? v : T(0);
        }
    });
}

template void dropout_forward<float>(const float*, float*, std::uint8_t*, index_t, std::uint32_t, float,
                                     std::uint64_t, std::uint64_t);
template void dropout_forward<double>(const double*, double*, std::uint8_t*, index_t, std::uint32_t, double,
                                      std::uint64_t, std::uint64_t);
template void dropout_backward<float>(const float*, const std::uint8_t*, float*, index_t, float);
template void dropout_backward<double>(const double*, const std::uint8_t*, double*, index_t, double);

}  // namespace pcn
