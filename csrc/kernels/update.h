// Optimizer updates fused into one pass over each parameter (NumPy needs a
// temporary and two or three passes). Same arithmetic, in the same order, as
// the NumPy code in pyconvnet/optim.py, so both give identical bits -- except
// that the steps run with denormals flushed to zero (FTZ/DAZ, on every thread of
// the step; the caller's mode is restored): state decaying below the smallest
// normal number becomes 0 instead of costing a microcode assist per operation.
#pragma once
#include "core/common.h"

namespace pcn {

// g' = g + wd * p (if wd != 0);  p -= lr * g'                       (Kyoto Univ. exercise, eq. 39)
template <typename T>
void sgd_step(T* p, const T* g, T lr, T wd, index_t n);
// g' as above;  v = momentum * v - lr * g';  p += v               (Kyoto Univ. exercise, eqs. 40-41)
template <typename T>
void momentum_step(T* p, const T* g, T* v, T lr, T momentum, T wd, index_t n);

// AdaDelta (Kyoto Univ. exercise, eqs. 46-49), in optim.AdaDelta._update's order:
// h = rho h + (1-rho) g g;  d = sqrt((s+eps)/(h+eps)) g;  s = rho s + (1-rho) d d;  p -= lr d
template <typename T>
void adadelta_step(T* p, const T* g, T* h, T* s, double lr, double rho, double eps, double wd, index_t n);
// Adam (Kyoto Univ. exercise, eqs. 50-55), in optim.Adam._update's order; c2 = 1 - b2^t, step = lr / (1 - b1^t)
template <typename T>
void adam_step(T* p, const T* g, T* m, T* v, double b1, double b2, double eps, double c2, double step, double wd,
               index_t n);

}  // namespace pcn
