// GELU (exact, x * Phi(x), and torch's approximate='tanh') and erf over flat
// arrays, one pass each way. Contract: outputs overwritten (=); the backward reads
// the forward INPUT x (GELU's derivative is not a function of its output).
#pragma once
#include "core/common.h"

namespace pcn {

// y = erf(x). float: a branch-free approximation (both pieces computed, one
// selected), max abs error ~1e-7 over all x; double: std::erf. NaN propagates,
// erf(+-inf) = +-1. float runs an AVX-512 or AVX2+FMA copy where the CPU has one
// (the target in use, core/cpu.h).
template <typename T>
void erf_forward(const T* x, T* y, index_t n);
// gx = gy * 2/sqrt(pi) * exp(-x^2)
template <typename T>
void erf_backward(const T* gy, const T* x, T* gx, index_t n);

// tanh_approx = false: y = x * Phi(x) = x/2 * (1 + erf(x/sqrt 2)), with Phi's
// negative tail from erfc, so y keeps its relative accuracy down to x ~ -13.
// tanh_approx = true: y = x/2 * (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))),
// computed as x * sigmoid(2u) (no cancellation). As torch: y(-inf) = NaN, y(inf) = inf.
template <typename T>
void gelu_forward(const T* x, T* y, index_t n, bool tanh_approx);
// gx = gy * dy/dx at x: Phi(x) + x phi(x) (exact), or the tanh form's derivative.
template <typename T>
void gelu_backward(const T* gy, const T* x, T* gx, index_t n, bool tanh_approx);

}  // namespace pcn
