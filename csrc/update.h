// Optimizer updates fused into one pass over each parameter (NumPy needs a
// temporary and two or three passes). Same arithmetic, in the same order, as
// the NumPy code in pyconvnet/optim.py, so both give identical bits.
#pragma once
#include "common.h"

namespace pcn {

// g' = g + wd * p (if wd != 0);  p -= lr * g'                       (seed 002 eq. 39)
template <typename T>
void sgd_step(T* p, const T* g, T lr, T wd, index_t n);
// g' as above;  v = momentum * v - lr * g';  p += v               (seed 002 eqs. 40-41)
template <typename T>
void momentum_step(T* p, const T* g, T* v, T lr, T momentum, T wd, index_t n);

}  // namespace pcn
