// Inverted dropout with a counter-based generator: element i is kept when
// bits(key, i) >= threshold, bits a 32-bit hash of (i, key). No generator state, so
// any thread can draw any element and the mask depends only on (key, n), never on
// the thread count. Contract: outputs overwritten (=).
#pragma once
#include <cstdint>

#include "core/common.h"

namespace pcn {

// The 32 random bits of element i under key (exposed for the statistical tests).
std::uint32_t dropout_bits(std::uint64_t key, std::uint64_t i);

// y[i] = keep ? x[i] * scale : 0, mask[i] = keep (0/1), keep = dropout_bits(key, offset + i) >= threshold.
// offset: the counter of element 0, so a slice of a larger array (one rank's shard of a
// data-parallel batch) draws the mask the whole array would have had there.
template <typename T>
void dropout_forward(const T* x, T* y, std::uint8_t* mask, index_t n, std::uint32_t threshold, T scale,
                     std::uint64_t key, std::uint64_t offset = 0);
// gx[i] = mask[i] ? gy[i] * scale : 0
template <typename T>
void dropout_backward(const T* gy, const std::uint8_t* mask, T* gx, index_t n, T scale);

}  // namespace pcn
