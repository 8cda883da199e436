// Direct (im2col-free) stride-1 convolution, float32, for every CPU target: one
// body (conv_direct_body.h) compiled for AVX-512, AVX2 + FMA and a portable 4-lane
// baseline (conv_direct_<isa>.cpp), the copy chosen by the target in use
// (core/cpu.h: active_isa). Each entry returns false, having done nothing, when its
// path does not apply (stride > 1, too narrow an output row, ...); conv.cpp then
// falls back to im2col + GEMM. Same contract as conv.h: outputs are overwritten.
// Switch::direct_conv turns the path off (tests and the bench compare it with
// im2col + GEMM); calls(Switch::direct_conv) counts the convolutions it ran.
#pragma once
#include "kernels/conv.h"

namespace pcn {

bool conv2d_forward_direct(const float* x, const float* w, const float* bias, float* y, const ConvArgs& a);
bool conv2d_backward_data_direct(const float* gy, const float* w, float* gx, const ConvArgs& a);
bool conv2d_backward_weight_direct(const float* gy, const float* x, float* gw, const ConvArgs& a);

}  // namespace pcn
