// Elementwise math written so the compiler vectorises it (plain float arithmetic, no
// branches, no libm calls), shared by the activations that need an exponential.
#pragma once
#include <cmath>
#include <cstdint>

namespace pcn {

// exp(x) for x in [-87.3, 0] (Cephes expf): x = n ln2 + r, |r| <= ln2/2, exp(r) by its
// degree-6 minimax polynomial, 2^n built in the exponent bits. kFloor: floor by
// std::floor (one instruction from SSE4.1 on; in the AVX builds GCC vectorises only this
// form), else by truncation and a step down (the SSE2 baseline has no vector floor).
template <bool kFloor>
[[gnu::always_inline]] inline float exp_nonpos(float x) {
    const float fx = x * 1.44269504088896341f + 0.5f;  // n = floor(fx): x/ln2 rounded to nearest
    std::int32_t n;
    if constexpr (kFloor) {
        n = static_cast<std::int32_t>(std::floor(fx));
    } else {
        n = static_cast<std::int32_t>(fx);                             // truncates toward 0 ...
        n -= static_cast<std::int32_t>(static_cast<float>(n) > fx);  // ... so step down to the floor
    }
    const float nf = static_cast<float>(n);
    float r = x - nf * 0.693359375f;
    r += nf * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const std::int32_t bits = (n + 127) << 23;
    return p * __builtin_bit_cast(float, bits);
}

}  // namespace pcn
