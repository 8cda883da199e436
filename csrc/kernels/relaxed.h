// Relaxed receptive-field convolution (the relaxed receptive field paper, Tazume et al.): O = I (x) L (x) W.
// Contract, once for the file: every function OVERWRITES its outputs (=); none
// accumulates into caller memory. A null output pointer means "not wanted".
//   x  (N, C, n_in)       L (n_in, n_out, k)       w (O, C, k)       y (N, O, n_out)
// relaxed:    P[n,c,j,s] = sum_i x[n,c,i] L[i,j,s]     (dense L; P kept as (C, N, n_out, k))
// receptive:  P[n,c,j,s] = x[n,c,index[j,s]], 0 where index[j,s] == -1 (zero padding)
// both:       y[n,o,j]   = sum_{c,s} w[o,c,s] P[n,c,j,s] + bias[o]
// Scratch: pcn::scratch slot 3, and slot 0 (the convolution's) for per-sample transposes;
// neither is live across calls, so sharing slot 0 with the convolution is safe.
#pragma once
#include "core/common.h"

namespace pcn {

struct RelaxedArgs {
    index_t N, C, n_in, n_out, k, O;
};

// P_out (C, N, n_out, k) (channel-major), may be null: receives P, for the backward to reuse.
template <typename T>
void relaxed_conv_forward(const T* x, const T* L, const T* w, const T* bias, T* y, T* P_out, const RelaxedArgs& a);
// P_in (C, N, n_out, k): the forward's P, or null to recompute it (only grad_w needs it).
// gx (N, C, n_in), gL (n_in, n_out, k), gw (O, C, k), gb (O): each may be null.
template <typename T>
void relaxed_conv_backward(const T* gy, const T* x, const T* L, const T* w, const T* P_in, T* gx, T* gL, T* gw,
                           T* gb, const RelaxedArgs& a);

// index (n_out, k), values in [-1, n_in): the caller has checked the range.
template <typename T>
void receptive_conv_forward(const T* x, const index_t* index, const T* w, const T* bias, T* y, const RelaxedArgs& a);
template <typename T>
void receptive_conv_backward(const T* gy, const T* x, const index_t* index, const T* w, T* gx, T* gw, T* gb,
                             const RelaxedArgs& a);

}  // namespace pcn
