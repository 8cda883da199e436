// Fully connected layer.
#include "bind/checks.h"
#include "kernels/linear.h"

namespace py = pybind11;
using pcn::index_t;

namespace {

using namespace pcn::bind;

template <typename T>
arr<T> linear_forward(arr<T> x, arr<T> w, oarr<T> bias) {
    check_ndim(x, "input", 2);
    check_ndim(w, "weight", 2);
    const index_t N = x.shape(0), in = x.shape(1), out = w.shape(0);
    if (w.shape(1) != in)
        fail("weight: expected shape (out_features, " + std::to_string(in) + "), got " + shape_str(w));
    check_blas_size(std::max({N, in, out}), "dimension");
    const T* b = opt_ptr<T>(bias, "bias", out);
    arr<T> y({N, out});
    const T *xp = x.data(), *wp = w.data();
    T* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        pcn::linear_forward(xp, wp, b, yp, N, in, out);
    }
    return y;
}

template <typename T>
py::tuple linear_backward(arr<T> gy, arr<T> x, arr<T> w, bool need_x, outarr<T> gw_out, outarr<T> gb_out) {
    check_ndim(x, "input", 2);
    check_ndim(w, "weight", 2);
    const index_t N = x.shape(0), in = x.shape(1), out = w.shape(0);
    if (w.shape(1) != in)
        fail("weight: expected shape (out_features, " + std::to_string(in) + "), got " + shape_str(w));
    check_shape(gy, "grad_out", {N, out});
    py::object gxo = py::none(), gw, gb;
    T* gwp = out_or_new(gw_out, "grad_weight_out", {out, in}, gw);
    T* gbp = out_or_new(gb_out, "grad_bias_out", {out}, gb);
    T* gxp = nullptr;
    if (need_x) {
        arr<T> gx({N, in});
        gxp = gx.mutable_data();
        gxo = gx;
    }
    const T *gyp = gy.data(), *xp = x.data(), *wp = w.data();
    {
        py::gil_scoped_release nogil;
        pcn::linear_backward(gyp, xp, wp, gxp, gwp, gbp, N, in, out);
    }
    return py::make_tuple(gxo, gw, gb);
}


template <typename T>
void register_typed(py::module_& m) {
    using namespace py::literals;
    m.def("linear_forward", &linear_forward<T>, "x"_a, "w"_a, "bias"_a);
    m.def("linear_backward", &linear_backward<T>, "grad_out"_a, "x"_a, "w"_a, "need_input"_a = true,
          "grad_weight_out"_a.noconvert() = py::none(), "grad_bias_out"_a.noconvert() = py::none());
}

}  // namespace

void register_linear(py::module_& m) {
    // float64 first: in pybind11's convert pass a float64 array must not be cast down.
    register_typed<double>(m);
    register_typed<float>(m);
}
