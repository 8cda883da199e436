// Batch normalisation: training forward (batch statistics), inference forward, backward.
#include "bind/checks.h"
#include "kernels/batchnorm.h"

namespace py = pybind11;
using pcn::index_t;

namespace {

using namespace pcn::bind;

template <typename T>
py::tuple batch_norm_train(arr<T> x, oarr<T> gamma, oarr<T> beta, double eps) {
    auto d = ncs(x, "input");
    if (d.N * d.S < 1) fail("input: batch norm needs at least one value per channel, got shape " + shape_str(x));
    if (!(eps > 0)) fail("eps: expected a positive value, got " + std::to_string(eps));
    const T* g = opt_ptr<T>(gamma, "weight", d.C);
    const T* b = opt_ptr<T>(beta, "bias", d.C);
    arr<T> y(shape_of(x)), mean({d.C}), var({d.C}), invstd({d.C});
    const T* xp = x.data();
    T *yp = y.mutable_data(), *mp = mean.mutable_data(), *vp = var.mutable_data(), *ip = invstd.mutable_data();
    {
        py::gil_scoped_release nogil;
        pcn::batch_norm_forward_train(xp, g, b, yp, mp, vp, ip, d.N, d.C, d.S, eps);
    }
    return py::make_tuple(y, mean, var, invstd);
}

template <typename T>
arr<T> batch_norm_eval(arr<T> x, arr<T> mean, arr<T> var, oarr<T> gamma, oarr<T> beta, double eps) {
    auto d = ncs(x, "input");
    if (!(eps >= 0)) fail("eps: expected a non-negative value, got " + std::to_string(eps));
    check_shape(mean, "running_mean", {d.C});
    check_shape(var, "running_var", {d.C});
    const T* g = opt_ptr<T>(gamma, "weight", d.C);
    const T* b = opt_ptr<T>(beta, "bias", d.C);
    arr<T> y(shape_of(x));
    const T *xp = x.data(), *mp = mean.data(), *vp = var.data();
    T* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        pcn::batch_norm_forward_eval(xp, mp, vp, g, b, yp, d.N, d.C, d.S, eps);
    }
    return y;
}

template <typename T>
py::tuple batch_norm_backward(arr<T> gy, arr<T> x, oarr<T> gamma, arr<T> mean, arr<T> invstd) {
    auto d = ncs(x, "input");
    check_same_shape(gy, "grad_out", x, "the input");
    const T* g = opt_ptr<T>(gamma, "weight", d.C);
    check_shape(mean, "mean", {d.C});
    check_shape(invstd, "invstd", {d.C});
    arr<T> gx(shape_of(x)), gg({d.C}), gb({d.C});
    const T *gyp = gy.data(), *xp = x.data(), *mp = mean.data(), *ip = invstd.data();
    T *gxp = gx.mutable_data(), *ggp = gg.mutable_data(), *gbp = gb.mutable_data();
    {
        py::gil_scoped_release nogil;
        pcn::batch_norm_backward(gyp, xp, g, mp, ip, gxp, ggp, gbp, d.N, d.C, d.S);
    }
    return py::make_tuple(gx, gg, gb);
}


template <typename T>
void register_typed(py::module_& m) {
    using namespace py::literals;
    m.def("batch_norm_train", &batch_norm_train<T>, "x"_a, "weight"_a, "bias"_a, "eps"_a);
    m.def("batch_norm_eval", &batch_norm_eval<T>, "x"_a, "mean"_a, "var"_a, "weight"_a, "bias"_a, "eps"_a);
    m.def("batch_norm_backward", &batch_norm_backward<T>, "grad_out"_a, "x"_a, "weight"_a, "mean"_a, "invstd"_a);
}

}  // namespace

void register_norm(py::module_& m) {
    // float64 first: in pybind11's convert pass a float64 array must not be cast down.
    register_typed<double>(m);
    register_typed<float>(m);
}
