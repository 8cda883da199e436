// Convolution family: conv2d, conv_transpose2d, unfold/fold.
#include "bind/checks.h"
#include "kernels/conv.h"
#include "kernels/im2col.h"

namespace py = pybind11;
using pcn::index_t;

namespace {

using namespace pcn::bind;

template <typename T>
arr<T> conv2d_forward(arr<T> x, arr<T> w, oarr<T> bias, I2 stride, I4 pad, I2 dil, index_t groups) {
    check_ndim(x, "input", 4);
    check_ndim(w, "weight", 4);
    const index_t N = x.shape(0), C = x.shape(1), O = w.shape(0);
    if (w.shape(1) * groups != C)
        fail("weight: expected shape (O, " + std::to_string(C / std::max<index_t>(groups, 1)) +
             ", kh, kw) for input with " + std::to_string(C) + " channels and groups=" + std::to_string(groups) +
             ", got " + shape_str(w));
    auto a = conv_args(N, C, x.shape(2), x.shape(3), O, w.shape(2), w.shape(3), stride, pad, dil, groups, "weight");
    const T* b = opt_ptr<T>(bias, "bias", O);
    arr<T> y({N, O, a.g.OH, a.g.OW});
    const T *xp = x.data(), *wp = w.data();
    T* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        pcn::conv2d_forward(xp, wp, b, yp, a);
    }
    return y;
}

template <typename T>
py::tuple conv2d_backward(arr<T> gy, arr<T> x, arr<T> w, I2 stride, I4 pad, I2 dil, index_t groups, bool need_x,
                          bool need_w, bool need_b, outarr<T> gw_out, outarr<T> gb_out) {
    check_ndim(x, "input", 4);
    check_ndim(w, "weight", 4);
    const index_t N = x.shape(0), C = x.shape(1), O = w.shape(0);
    if (w.shape(1) * groups != C) fail("weight: channel mismatch with input, got " + shape_str(w));
    auto a = conv_args(N, C, x.shape(2), x.shape(3), O, w.shape(2), w.shape(3), stride, pad, dil, groups, "weight");
    check_shape(gy, "grad_out", {N, O, a.g.OH, a.g.OW});
    py::object gx = py::none(), gw = py::none(), gb = py::none();
    arr<T> ax;
    const T *gyp = gy.data(), *xp = x.data(), *wp = w.data();
    T *gxp = nullptr, *gwp = nullptr, *gbp = nullptr;
    if (need_x) { ax = arr<T>({N, C, a.g.H, a.g.W}); gxp = ax.mutable_data(); gx = ax; }
    if (need_w) gwp = out_or_new(gw_out, "grad_weight_out", {O, C / groups, a.g.kh, a.g.kw}, gw);
    if (need_b) gbp = out_or_new(gb_out, "grad_bias_out", {O}, gb);
    {
        py::gil_scoped_release nogil;
        pcn::conv2d_backward(gyp, xp, wp, gxp, gwp, gbp, a);
    }
    return py::make_tuple(gx, gw, gb);
}

template <typename T>
arr<T> conv_transpose2d_forward(arr<T> x, arr<T> w, oarr<T> bias, I2 s, I2 p, I2 op, I2 d, index_t groups) {
    check_ndim(x, "input", 4);
    auto a = transpose_args(x.shape(0), x.shape(1), x.shape(2), x.shape(3), w, groups, s, p, op, d);
    const index_t Cout = a.g.C;
    const T* b = opt_ptr<T>(bias, "bias", Cout);
    arr<T> y({a.N, Cout, a.g.H, a.g.W});
    const T *xp = x.data(), *wp = w.data();
    T* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        pcn::conv2d_backward_data(xp, wp, yp, a);
        if (b) pcn::add_channel_bias(yp, b, a.N, Cout, a.g.H * a.g.W);
    }
    return y;
}

template <typename T>
py::tuple conv_transpose2d_backward(arr<T> gy, arr<T> x, arr<T> w, I2 s, I2 p, I2 op, I2 d, index_t groups,
                                    bool need_input) {
    check_ndim(x, "input", 4);
    auto a = transpose_args(x.shape(0), x.shape(1), x.shape(2), x.shape(3), w, groups, s, p, op, d);
    check_shape(gy, "grad_out", {a.N, a.g.C, a.g.H, a.g.W});
    // the input gradient is a full convolution: skipped when nothing consumes it (a
    // generator's first layer, whose input is the noise)
    py::object gx = py::none();
    arr<T> ax, gw({w.shape(0), w.shape(1), w.shape(2), w.shape(3)}), gb({a.g.C});
    const T *gyp = gy.data(), *xp = x.data(), *wp = w.data();
    T *gxp = nullptr, *gwp = gw.mutable_data(), *gbp = gb.mutable_data();
    if (need_input) { ax = arr<T>({a.N, a.O, a.g.OH, a.g.OW}); gxp = ax.mutable_data(); gx = ax; }
    {
        py::gil_scoped_release nogil;
        if (gxp) pcn::conv2d_forward<T>(gyp, wp, nullptr, gxp, a);
        pcn::conv2d_backward_weight(xp, gyp, gwp, a);
        pcn::channel_sum(gyp, gbp, a.N, a.g.C, a.g.H * a.g.W);
    }
    return py::make_tuple(gx, gw, gb);
}

template <typename T>
arr<T> unfold(arr<T> x, I2 k, I2 d, I2 p, I2 s) {
    check_ndim(x, "input", 4);
    const index_t N = x.shape(0);
    auto g = unfold_geom(x.shape(1), x.shape(2), x.shape(3), k, d, p, s);
    arr<T> y({N, g.C * g.kh * g.kw, g.OH * g.OW});
    const T* xp = x.data();
    T* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        pcn::unfold(xp, N, g, yp);
    }
    return y;
}

template <typename T>
arr<T> fold(arr<T> cols, I2 out, I2 k, I2 d, I2 p, I2 s) {
    check_ndim(cols, "input", 3);
    check_pos(out, "output_size");
    check_pos(k, "kernel_size");
    const index_t N = cols.shape(0), R = cols.shape(1), kk = k[0] * k[1];
    if (R % kk) fail("input: dimension 1 (" + std::to_string(R) + ") is not divisible by kernel_size product " + std::to_string(kk));
    auto g = unfold_geom(R / kk, out[0], out[1], k, d, p, s);
    if (cols.shape(2) != g.OH * g.OW)
        fail("input: expected " + std::to_string(g.OH * g.OW) + " blocks in dimension 2 for output_size (" +
             std::to_string(out[0]) + ", " + std::to_string(out[1]) + "), got shape " + shape_str(cols));
    arr<T> y({N, g.C, g.H, g.W});
    const T* cp = cols.data();
    T* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        pcn::fold(cp, N, g, yp);
    }
    return y;
}


template <typename T>
void register_typed(py::module_& m) {
    using namespace py::literals;
    m.def("conv2d_forward", &conv2d_forward<T>, "x"_a, "w"_a, "bias"_a, "stride"_a, "padding"_a, "dilation"_a, "groups"_a);
    m.def("conv2d_backward", &conv2d_backward<T>, "grad_out"_a, "x"_a, "w"_a, "stride"_a, "padding"_a, "dilation"_a,
          "groups"_a, "need_input"_a = true, "need_weight"_a = true, "need_bias"_a = true,
          "grad_weight_out"_a.noconvert() = py::none(), "grad_bias_out"_a.noconvert() = py::none());
    m.def("conv_transpose2d_forward", &conv_transpose2d_forward<T>, "x"_a, "w"_a, "bias"_a, "stride"_a, "padding"_a,
          "output_padding"_a, "dilation"_a, "groups"_a);
    m.def("conv_transpose2d_backward", &conv_transpose2d_backward<T>, "grad_out"_a, "x"_a, "w"_a, "stride"_a,
          "padding"_a, "output_padding"_a, "dilation"_a, "groups"_a, "need_input"_a = true);
    m.def("unfold", &unfold<T>, "x"_a, "kernel_size"_a, "dilation"_a, "padding"_a, "stride"_a);
    m.def("fold", &fold<T>, "cols"_a, "output_size"_a, "kernel_size"_a, "dilation"_a, "padding"_a, "stride"_a);
}

}  // namespace

void register_conv(py::module_& m) {
    // float64 first: in pybind11's convert pass a float64 array must not be cast down.
    register_typed<double>(m);
    register_typed<float>(m);
}
