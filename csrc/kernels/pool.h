// Pooling over NCHW planes. Contract: forwards overwrite y (and argmax);
// backwards overwrite gx. Max pooling: first maximum in row-major window order
// wins; a NaN counts as a maximum (as torch), the last NaN seen wins.
#pragma once
#include "core/common.h"

namespace pcn {

struct PoolArgs {
    index_t planes, H, W, OH, OW, kh, kw, sh, sw, ph, pw, dh, dw;
};

template <typename T>
void max_pool2d_forward(const T* x, T* y, std::int64_t* argmax, const PoolArgs& p);
template <typename T>
void max_pool2d_backward(const T* gy, const std::int64_t* argmax, T* gx, const PoolArgs& p);
template <typename T>
void avg_pool2d_forward(const T* x, T* y, const PoolArgs& p, bool count_include_pad);
template <typename T>
void avg_pool2d_backward(const T* gy, T* gx, const PoolArgs& p, bool count_include_pad);

}  // namespace pcn
