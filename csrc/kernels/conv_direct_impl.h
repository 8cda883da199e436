// What the ISA copies of the direct convolution (conv_direct_<isa>.cpp) include
// before they open their target region: every standard header the body uses, and
// the library's own declarations. Nothing here is compiled for a target: inline
// functions defined here are ordinary code, whichever copy calls them.
#pragma once
#include <algorithm>
#include <cstring>
#include <vector>

#include "core/blas.h"
#include "core/cpu.h"
#include "core/parallel.h"
#include "kernels/conv.h"

namespace pcn {

// A tile of the forward/data-gradient micro-kernel: MR output channels x NV vectors,
// and its relative speed for the block-cover cost model.
struct TileShape {
    int mr, nv;
    double rate;
};

// The entry points of each target's copy (same contract as conv_direct.h).
#define PCN_DIRECT_DECLARE(ns)                                                                   \
    namespace ns {                                                                               \
    bool forward(const float* x, const float* w, const float* bias, float* y, const ConvArgs& a); \
    bool backward_data(const float* gy, const float* w, float* gx, const ConvArgs& a);           \
    bool backward_weight(const float* gy, const float* x, float* gw, const ConvArgs& a);         \
    }
PCN_DIRECT_DECLARE(baseline)
PCN_DIRECT_DECLARE(avx2)
PCN_DIRECT_DECLARE(avx512)
#undef PCN_DIRECT_DECLARE

}  // namespace pcn
