// Winograd convolution F(m x m, 3 x 3) for 3x3, stride-1, dilation-1, ungrouped
// float32 convolutions (Lavin & Gray 2015, "Fast Algorithms for Convolutional Neural
// Networks"), for the forward pass, the data gradient and the weight gradient.
//
// Per tile of m x m outputs, an (m+2) x (m+2) input patch d and a 3x3 filter g:
//   Y = A^T [ (G g G^T) (.) (B^T d B) ] A                  (correlation, as conv2d)
// so the (m+2)^2 elementwise products of all tiles, summed over input channels, are
// (m+2)^2 GEMMs (C_out x C_in) @ (C_in x tiles): 2.25x (m = 2) or 4x (m = 4) fewer
// multiplications than direct convolution. The weight gradient is the same
// algorithm run backwards: dg = G^T [ sum_tiles (A dY A^T) (.) (B^T d B) ] G.
//
// Batches of many samples go in chunks of a few samples, each taken by one thread
// through every stage (channel-last copy, transforms, products, copy back) so its data
// stay in that core's L2; few large samples go one chunk at a time, the threads
// splitting its tiles in blocks. The forward and data gradient write disjoint
// outputs, and the weight gradient sums fixed ranges of chunks (or blocks) in order,
// the parts added in part order (core/parallel.h: sum_chunks; conv_isa.h:
// wino_backward_plan): every result has the same bits for any thread count.
//
// Accuracy (float32): F(4x4) rounds about 10x worse than direct convolution, F(2x2)
// about as well (tests/functional/test_winograd.py measures both against float64).
// Contract as conv.h: outputs are overwritten.
#pragma once
#include "kernels/conv.h"

namespace pcn {

// Whether Winograd applies to this convolution (3x3, stride 1, dilation 1, one
// group) and pays off (enough channels): the entry points below return false, doing
// nothing, otherwise. m = 0 picks the tile size; 2 or 4 forces it (tests).
bool conv2d_forward_winograd(const float* x, const float* w, const float* bias, float* y, const ConvArgs& a,
                             int m = 0);
// Both gradients in one pass over gy (either output may be null: not wanted): the
// data gradient gx and the weight gradient gw share gy's channel-last copy, and the
// bias gradient gb (O) (null: not wanted) is summed from it on the way.
bool conv2d_backward_winograd(const float* gy, const float* x, const float* w, float* gx, float* gw, float* gb,
                              const ConvArgs& a, int m = 0);

}  // namespace pcn
