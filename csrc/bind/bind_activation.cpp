// Elementwise activations and dropout.
#include "bind/checks.h"
#include <cstdint>

#include "kernels/activation.h"
#include "kernels/dropout.h"
#include "kernels/gelu.h"

namespace py = pybind11;
using pcn::index_t;

namespace {

using namespace pcn::bind;

// y = f(x) elementwise, any shape
template <typename T, void (*F)(const T*, T*, index_t)>
arr<T> unary(arr<T> x) {
    arr<T> y(shape_of(x));
    const T* xp = x.data();
    T* yp = y.mutable_data();
    const index_t n = x.size();
    {
        py::gil_scoped_release nogil;
        F(xp, yp, n);
    }
    return y;
}

// gx = f'(gy, y) elementwise from the forward OUTPUT y
template <typename T, void (*F)(const T*, const T*, T*, index_t)>
arr<T> unary_backward(arr<T> gy, arr<T> y) {
    check_same_shape(gy, "grad_out", y, "the forward output y");
    arr<T> gx(shape_of(y));
    const T *gp = gy.data(), *yp = y.data();
    T* xp = gx.mutable_data();
    const index_t n = y.size();
    {
        py::gil_scoped_release nogil;
        F(gp, yp, xp, n);
    }
    return gx;
}

using mask_arr = py::array_t<bool, py::array::c_style | py::array::forcecast>;

// (y, mask): mask a bool array of x's shape. threshold = p * 2^32 (the caller has checked p in [0, 1)).
template <typename T>
py::tuple dropout_forward(arr<T> x, double p, std::uint64_t key, std::uint64_t offset) {
    if (!(p >= 0.0 && p < 1.0)) fail("p: expected a probability in [0, 1), got " + std::to_string(p));
    const auto thr = std::uint32_t(std::min(p * 4294967296.0, 4294967295.0));
    arr<T> y(shape_of(x));
    mask_arr mask(shape_of(x));
    const T* xp = x.data();
    T* yp = y.mutable_data();
    auto* mp = reinterpret_cast<std::uint8_t*>(mask.mutable_data());
    const index_t n = x.size();
    {
        py::gil_scoped_release nogil;
        pcn::dropout_forward<T>(xp, yp, mp, n, thr, T(1.0 / (1.0 - p)), key, offset);
    }
    return py::make_tuple(y, mask);
}

template <typename T>
arr<T> dropout_backward(arr<T> gy, py::array mask, double scale) {
    if (mask.dtype().kind() != 'b')
        fail("mask: expected the bool mask of the forward, got dtype " + std::string(py::str(mask.dtype())));
    mask_arr m = mask_arr::ensure(mask);
    if (!m) throw py::error_already_set();
    check_same_shape(gy, "grad_out", m, "the mask");
    arr<T> gx(shape_of(gy));
    const T* gp = gy.data();
    const auto* mp = reinterpret_cast<const std::uint8_t*>(m.data());
    T* xp = gx.mutable_data();
    const index_t n = gy.size();
    {
        py::gil_scoped_release nogil;
        pcn::dropout_backward<T>(gp, mp, xp, n, T(scale));
    }
    return gx;
}


template <typename T>
void register_typed(py::module_& m) {
    using namespace py::literals;
    m.def("relu_forward", &unary<T, pcn::relu_forward<T>>, "x"_a);
    m.def("relu_backward", &unary_backward<T, pcn::relu_backward<T>>, "grad_out"_a, "y"_a);
    m.def("sigmoid_forward", &unary<T, pcn::sigmoid_forward<T>>, "x"_a);
    m.def("sigmoid_backward", &unary_backward<T, pcn::sigmoid_backward<T>>, "grad_out"_a, "y"_a);
    m.def("dropout_forward", &dropout_forward<T>, "x"_a, "p"_a, "key"_a, "offset"_a = 0);
    m.def("dropout_backward", &dropout_backward<T>, "grad_out"_a, "mask"_a, "scale"_a);
}

// GELU / erf: the backward reads the forward INPUT x
template <typename T>
arr<T> gelu_forward(arr<T> x, bool tanh_approx) {
    arr<T> y(shape_of(x));
    const T* xp = x.data();
    T* yp = y.mutable_data();
    const index_t n = x.size();
    {
        py::gil_scoped_release nogil;
        pcn::gelu_forward<T>(xp, yp, n, tanh_approx);
    }
    return y;
}

template <typename T>
arr<T> gelu_backward(arr<T> gy, arr<T> x, bool tanh_approx) {
    check_same_shape(gy, "grad_out", x, "the forward input x");
    arr<T> gx(shape_of(x));
    const T *gp = gy.data(), *xp = x.data();
    T* op = gx.mutable_data();
    const index_t n = x.size();
    {
        py::gil_scoped_release nogil;
        pcn::gelu_backward<T>(gp, xp, op, n, tanh_approx);
    }
    return gx;
}

template <typename T>
arr<T> erf_backward(arr<T> gy, arr<T> x) {
    check_same_shape(gy, "grad_out", x, "the forward input x");
    arr<T> gx(shape_of(x));
    const T *gp = gy.data(), *xp = x.data();
    T* op = gx.mutable_data();
    const index_t n = x.size();
    {
        py::gil_scoped_release nogil;
        pcn::erf_backward<T>(gp, xp, op, n);
    }
    return gx;
}

template <typename T>
void register_gelu_typed(py::module_& m) {
    using namespace py::literals;
    m.def("gelu_forward", &gelu_forward<T>, "x"_a, "tanh_approx"_a);
    m.def("gelu_backward", &gelu_backward<T>, "grad_out"_a, "x"_a, "tanh_approx"_a);
    m.def("erf_forward", &unary<T, pcn::erf_forward<T>>, "x"_a);
    m.def("erf_backward", &erf_backward<T>, "grad_out"_a, "x"_a);
}

void register_gelu(py::module_& m) {
    register_gelu_typed<double>(m);
    register_gelu_typed<float>(m);
}

}  // namespace

void register_activation(py::module_& m) {
    // float64 first: in pybind11's convert pass a float64 array must not be cast down.
    register_typed<double>(m);
    register_typed<float>(m);
    register_gelu(m);
}
