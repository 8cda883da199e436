// Elementwise activations over flat arrays. Contract: outputs overwritten (=).
#pragma once
#include "common.h"

namespace pcn {

// y = max(x, 0)
template <typename T>
void relu_forward(const T* x, T* y, index_t n);
// gx = gy where y > 0, else 0   (y: the forward output)
template <typename T>
void relu_backward(const T* gy, const T* y, T* gx, index_t n);

}  // namespace pcn
