// Direct (im2col-free) stride-1 convolution for float32 on AVX-512 CPUs.
// Each returns false, having done nothing, when its path does not apply (no
// AVX-512, stride > 1, too narrow an output row, ...); conv.cpp then falls
// back to im2col + GEMM. Same contract as conv.h: outputs are overwritten.
#pragma once
#include "kernels/conv.h"

namespace pcn {

bool conv2d_forward_direct(const float* x, const float* w, const float* bias, float* y, const ConvArgs& a);
bool conv2d_backward_data_direct(const float* gy, const float* w, float* gx, const ConvArgs& a);
bool conv2d_backward_weight_direct(const float* gy, const float* x, float* gw, const ConvArgs& a);
// Switch::direct_conv turns the path off (tests and the bench compare it with
// im2col + GEMM); calls(Switch::direct_conv) counts the convolutions it ran.

}  // namespace pcn
