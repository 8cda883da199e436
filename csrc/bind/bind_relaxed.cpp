// Relaxed receptive-field convolution (the relaxed receptive field paper): the
// dense-L contraction and the index-table (receptive) form.
#include "bind/checks.h"
#include "kernels/relaxed.h"

namespace py = pybind11;
using pcn::index_t;

namespace {

using namespace pcn::bind;

// Returns y, or (y, P) with return_patches: P (C_in, N, n_out, k) for relaxed_backward's patches.
template <typename T>
py::object relaxed_forward(arr<T> x, arr<T> L, arr<T> w, oarr<T> bias, bool return_patches) {
    auto a = dense_args(x, L, w);
    const T* b = opt_ptr<T>(bias, "bias", a.O);
    arr<T> y({a.N, a.O, a.n_out});
    py::object P = py::none();
    T* pp = nullptr;
    if (return_patches) { arr<T> t({a.C, a.N, a.n_out, a.k}); pp = t.mutable_data(); P = t; }
    const T *xp = x.data(), *lp = L.data(), *wp = w.data();
    T* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        pcn::relaxed_conv_forward(xp, lp, wp, b, yp, pp, a);
    }
    if (return_patches) return py::make_tuple(y, P);
    return std::move(y);
}

template <typename T>
py::tuple relaxed_backward(arr<T> gy, arr<T> x, arr<T> L, arr<T> w, oarr<T> patches, bool need_x, bool need_L,
                           bool need_w, bool need_b) {
    auto a = dense_args(x, L, w);
    check_relaxed_grad_out(gy, a);
    const T* pp = nullptr;
    if (patches) {
        check_patches(*patches, a);
        pp = patches->data();
    }
    py::object ox = py::none(), oL = py::none(), ow = py::none(), ob = py::none();
    T *gxp = nullptr, *gLp = nullptr, *gwp = nullptr, *gbp = nullptr;
    if (need_x) { arr<T> t({a.N, a.C, a.n_in}); gxp = t.mutable_data(); ox = t; }
    if (need_L) { arr<T> t({a.n_in, a.n_out, a.k}); gLp = t.mutable_data(); oL = t; }
    if (need_w) { arr<T> t({a.O, a.C, a.k}); gwp = t.mutable_data(); ow = t; }
    if (need_b) { arr<T> t({a.O}); gbp = t.mutable_data(); ob = t; }
    const T *gyp = gy.data(), *xp = x.data(), *lp = L.data(), *wp = w.data();
    {
        py::gil_scoped_release nogil;
        pcn::relaxed_conv_backward(gyp, xp, lp, wp, pp, gxp, gLp, gwp, gbp, a);
    }
    return py::make_tuple(ox, oL, ow, ob);
}

template <typename T>
arr<T> receptive_forward(arr<T> x, py::array index, arr<T> w, oarr<T> bias) {
    auto a = index_args(x, index, w);
    iarr idx = checked_index(index, a.n_in);
    const T* b = opt_ptr<T>(bias, "bias", a.O);
    arr<T> y({a.N, a.O, a.n_out});
    const T *xp = x.data(), *wp = w.data();
    const index_t* ip = idx.data();
    T* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        pcn::receptive_conv_forward(xp, ip, wp, b, yp, a);
    }
    return y;
}

template <typename T>
py::tuple receptive_backward(arr<T> gy, arr<T> x, py::array index, arr<T> w, bool need_x, bool need_w, bool need_b) {
    auto a = index_args(x, index, w);
    iarr idx = checked_index(index, a.n_in);
    check_relaxed_grad_out(gy, a);
    py::object ox = py::none(), ow = py::none(), ob = py::none();
    T *gxp = nullptr, *gwp = nullptr, *gbp = nullptr;
    if (need_x) { arr<T> t({a.N, a.C, a.n_in}); gxp = t.mutable_data(); ox = t; }
    if (need_w) { arr<T> t({a.O, a.C, a.k}); gwp = t.mutable_data(); ow = t; }
    if (need_b) { arr<T> t({a.O}); gbp = t.mutable_data(); ob = t; }
    const T *gyp = gy.data(), *xp = x.data(), *wp = w.data();
    const index_t* ip = idx.data();
    {
        py::gil_scoped_release nogil;
        pcn::receptive_conv_backward(gyp, xp, ip, wp, gxp, gwp, gbp, a);
    }
    return py::make_tuple(ox, ow, ob);
}

template <typename T>
void register_typed(py::module_& m) {
    using namespace py::literals;
    m.def("relaxed_conv_forward", &relaxed_forward<T>, "x"_a, "L"_a, "w"_a, "bias"_a, "return_patches"_a = false);
    m.def("relaxed_conv_backward", &relaxed_backward<T>, "grad_out"_a, "x"_a, "L"_a, "w"_a, "patches"_a = py::none(),
          "need_input"_a = true,
          "need_L"_a = true, "need_weight"_a = true, "need_bias"_a = true);
    m.def("receptive_conv_forward", &receptive_forward<T>, "x"_a, "index"_a, "w"_a, "bias"_a);
    m.def("receptive_conv_backward", &receptive_backward<T>, "grad_out"_a, "x"_a, "index"_a, "w"_a,
          "need_input"_a = true, "need_weight"_a = true, "need_bias"_a = true);
}

}  // namespace

void register_relaxed(py::module_& m) {
    // float64 first: in pybind11's convert pass a float64 array must not be cast down.
    register_typed<double>(m);
    register_typed<float>(m);
}
