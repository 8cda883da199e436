// Batch normalisation over x viewed as (N, C, S): statistics per channel c over
// N*S values. Contract: outputs overwritten (=). Running statistics are updated
// by the caller (Python), not here. Formulas: Kyoto Univ. exercise, eqs. 32-38.
#pragma once
#include "core/common.h"

namespace pcn {

// Training forward: batch mean, biased var, invstd = 1/sqrt(var + eps); y = gamma*(x-mean)*invstd + beta.
template <typename T>
void batch_norm_forward_train(const T* x, const T* gamma, const T* beta, T* y, T* mean, T* var, T* invstd, index_t N,
                              index_t C, index_t S, double eps);
// Inference forward with given mean/var.
template <typename T>
void batch_norm_forward_eval(const T* x, const T* mean, const T* var, const T* gamma, const T* beta, T* y, index_t N,
                             index_t C, index_t S, double eps);
// Training-mode backward (gamma may be null = 1).
template <typename T>
void batch_norm_backward(const T* gy, const T* x, const T* gamma, const T* mean, const T* invstd, T* gx, T* ggamma,
                         T* gbeta, index_t N, index_t C, index_t S);

}  // namespace pcn
