// The index type and the output-size formulas of every windowed op (the only
// copy: Python calls them through the bindings). Thread helpers are in
// parallel.h, GEMM and scratch buffers in blas.h, CPU features in cpu.h.
#pragma once
#include <cstdint>
#include <cstddef>

namespace pcn {

using index_t = std::int64_t;

// Output length of a convolution along one axis; pad_total = pad_before + pad_after.
// Geometry values (kernel, stride, padding, dilation) are bounded by the
// bindings to kMaxGeometry, so the products below cannot overflow int64; the
// helpers still return 0 (no output) for invalid values instead of dividing by 0.
constexpr index_t kMaxGeometry = index_t(1) << 30;

inline bool geometry_ok(index_t in, index_t k, index_t stride, index_t pad, index_t dilation) {
    return in >= 0 && k >= 1 && stride >= 1 && pad >= 0 && dilation >= 1 && k <= kMaxGeometry &&
           stride <= kMaxGeometry && pad <= 2 * kMaxGeometry && dilation <= kMaxGeometry && in <= (index_t(1) << 40);
}

inline index_t conv_out_size(index_t in, index_t k, index_t stride, index_t pad_total, index_t dilation) {
    if (!geometry_ok(in, k, stride, pad_total, dilation)) return 0;
    index_t span = dilation * (k - 1) + 1;
    if (in + pad_total < span) return 0;
    return (in + pad_total - span) / stride + 1;
}

// Output length of a transposed convolution along one axis.
inline index_t conv_transpose_out_size(index_t in, index_t k, index_t stride, index_t pad,
                                       index_t dilation, index_t output_padding) {
    if (!geometry_ok(in, k, stride, pad, dilation) || output_padding < 0 || output_padding > kMaxGeometry) return 0;
    return (in - 1) * stride - 2 * pad + dilation * (k - 1) + output_padding + 1;
}

// Output length of pooling (torch's pooling_output_shape): with ceil_mode the
// last window must still start inside the input or the left padding.
inline index_t pool_out_size(index_t in, index_t k, index_t stride, index_t pad, index_t dilation, bool ceil_mode) {
    if (!geometry_ok(in, k, stride, pad, dilation)) return 0;
    index_t num = in + 2 * pad - dilation * (k - 1) - 1 + (ceil_mode ? stride - 1 : 0);
    if (num < 0) return 0;
    index_t out = num / stride + 1;
    if (ceil_mode && (out - 1) * stride >= in + pad) --out;
    return out;
}

}  // namespace pcn
