// Softmax cross-entropy over the rows of (N, C) logits with integer labels (Kyoto Univ. exercise,
// eqs. 5, 6 and 12). Contract: outputs overwritten (=). Labels are in [0, C): the caller
// has checked them.
#pragma once
#include <cstdint>

#include "core/common.h"

namespace pcn {

// p (N, C) = softmax(logits) per row, computed from z = logits - rowmax (eq. 6). Returns
// sum_n (log sum_k exp(z[n, k]) - z[n, labels[n]]), summed in double.
template <typename T>
double softmax_xent_forward(const T* logits, const std::int64_t* labels, T* p, index_t N, index_t C);

// g (N, C) = (p - onehot(labels)) * scale   (eq. 12 with scale = 1/N for the mean)
template <typename T>
void softmax_xent_backward(const T* p, const std::int64_t* labels, T scale, T* g, index_t N, index_t C);

}  // namespace pcn
