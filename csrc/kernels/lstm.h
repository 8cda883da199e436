// LSTM over a batch-first sequence, torch.nn.LSTM's layout and gate order
// (input, forget, cell, output), zero initial state:
//   a_t = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh          (N, 4H)
//   i, f, o = sigmoid(a_i, a_f, a_o);  g = tanh(a_g)
//   c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t)
// x (N, T, I), w_ih (4H, I), w_hh (4H, H), b_ih / b_hh (4H,) (either may be null).
// Contract: outputs overwritten (=).
#pragma once
#include "core/common.h"

namespace pcn {

// h (N, T, H) every step's hidden state; gates (N, T, 4H) the activated gates
// [i, f, g, o]; c (N, T, H) the cell states: what the backward needs.
template <typename T>
void lstm_forward(const T* x, const T* w_ih, const T* w_hh, const T* b_ih, const T* b_hh, T* h, T* gates, T* c,
                  index_t N, index_t Tn, index_t I, index_t H);

// gh (N, T, H): the gradient of every step's hidden state (zeros where a step
// is not an output). gx (N, T, I) may be null (not wanted); gw_ih (4H, I),
// gw_hh (4H, H), gb (4H,) (the gradient of b_ih and of b_hh: they are equal).
template <typename T>
void lstm_backward(const T* gh, const T* x, const T* w_ih, const T* w_hh, const T* h, const T* gates, const T* c,
                   T* gx, T* gw_ih, T* gw_hh, T* gb, index_t N, index_t Tn, index_t I, index_t H);

}  // namespace pcn
