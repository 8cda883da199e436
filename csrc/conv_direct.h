// Direct (im2col-free) stride-1 convolution for float32 on AVX-512 CPUs.
// Each returns false, having done nothing, when its path does not apply (no
// AVX-512, stride > 1, too narrow an output row, ...); conv.cpp then falls
// back to im2col + GEMM. Same contract as conv.h: outputs are overwritten.
#pragma once
#include "conv.h"

namespace pcn {

bool conv2d_forward_direct(const float* x, const float* w, const float* bias, float* y, const ConvArgs& a);
bool conv2d_backward_data_direct(const float* gy, const float* w, float* gx, const ConvArgs& a);
bool conv2d_backward_weight_direct(const float* gy, const float* x, float* gw, const ConvArgs& a);

// Whether the CPU can run the direct path, and a switch for tests and the
// bench to compare it against im2col + GEMM (on by default).
bool direct_conv_supported();
void set_direct_conv(bool on);
bool direct_conv_enabled();
long long direct_conv_calls();

}  // namespace pcn
