// Fully connected layer, torch layout: x (N, in), w (out, in), y (N, out).
// Contract: outputs overwritten (=).
#pragma once
#include "core/common.h"

namespace pcn {

template <typename T>
void linear_forward(const T* x, const T* w, const T* b, T* y, index_t N, index_t in, index_t out);
// gx = gy @ w; gw = gy^T @ x; gb = sum_n gy.  Any output pointer may be null (not wanted).
template <typename T>
void linear_backward(const T* gy, const T* x, const T* w, T* gx, T* gw, T* gb, index_t N, index_t in, index_t out);

}  // namespace pcn
