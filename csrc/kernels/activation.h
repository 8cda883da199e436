// Elementwise activations over flat arrays. Contract: outputs overwritten (=).
#pragma once
#include "core/common.h"

namespace pcn {

// y = max(x, 0)
template <typename T>
void relu_forward(const T* x, T* y, index_t n);
// gx = gy where y > 0, else 0   (y: the forward output)
template <typename T>
void relu_backward(const T* gy, const T* y, T* gx, index_t n);

// y = 1 / (1 + exp(-x)), without overflow for any x; NaN propagates.
// float: a vectorisable Cody-Waite + degree-6 polynomial exp (~2 ulp); y is
// flushed to 0 below x = -87.3 (the true value is under 1.21e-38).
// float: AVX2 and AVX-512 copies of the same loop, the target in use picked at run time.
template <typename T>
void sigmoid_forward(const T* x, T* y, index_t n);
// gx = gy * y * (1 - y)   (y: the forward output)
template <typename T>
void sigmoid_backward(const T* gy, const T* y, T* gx, index_t n);

}  // namespace pcn
