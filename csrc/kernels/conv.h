// Convolution family (NCHW). Contract, once for the file: every function
// OVERWRITES its output (=); none accumulates into caller memory.
//   x  (N, C, H, W)        w (O, C/groups, kh, kw)       y (N, O, OH, OW)
// A transposed convolution is the same three primitives with the roles of x and
// y exchanged (its forward is backward_data, its data gradient is forward).
#pragma once
#include "kernels/im2col.h"

namespace pcn {

struct ConvArgs {
    index_t N, O, groups;
    Geom g;  // g.C/H/W: conv input; g.OH/OW: conv output; pads top/left
};

template <typename T>
void conv2d_forward(const T* x, const T* w, const T* bias, T* y, const ConvArgs& a);
template <typename T>
void conv2d_backward_data(const T* gy, const T* w, T* gx, const ConvArgs& a);
template <typename T>
void conv2d_backward_weight(const T* gy, const T* x, T* gw, const ConvArgs& a);
// The three gradients (any pointer may be null: not wanted); gb (O) is gy summed over
// samples and pixels. Some paths share work between them.
template <typename T>
void conv2d_backward(const T* gy, const T* x, const T* w, T* gx, T* gw, T* gb, const ConvArgs& a);

// gb[c] = sum over n and l of g[n, c, l]   (g is (N, C, L))
template <typename T>
void channel_sum(const T* g, T* gb, index_t N, index_t C, index_t L);
// y[n, c, l] += b[c]
template <typename T>
void add_channel_bias(T* y, const T* b, index_t N, index_t C, index_t L);

}  // namespace pcn
