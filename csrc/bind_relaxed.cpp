// Bindings of the relaxed receptive-field kernels (seed 003). Same rules as
// bindings.cpp: every size the kernels rely on is checked here (std::invalid_argument
// -> ValueError naming the argument), outputs are allocated here, the GIL is
// released around the kernels. pyconvnet/relaxed.py gives friendlier messages first.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bind_common.h"

#include <climits>
#include <cstdint>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>

#include "relaxed.h"

namespace py = pybind11;
using pcn::index_t;

namespace {

using pcn::bind::arr;
using pcn::bind::fail;
using pcn::bind::oarr;
using pcn::bind::shape_str;
using iarr = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;

void check_ndim(const py::array& a, const char* name, py::ssize_t nd, const char* layout) {
    if (a.ndim() != nd) fail(std::string(name) + ": expected a " + layout + " array, got shape " + shape_str(a));
}

void check_blas_size(index_t v, const char* what) {
    if (v >= INT_MAX) fail(std::string(what) + " too large for 32-bit BLAS: " + std::to_string(v));
}

// x (N, C, n_in), w (O, C, k): the sizes both kernels share. k and n_out come from L or index.
pcn::RelaxedArgs relaxed_args(const py::array& x, const py::array& w, index_t n_out, index_t k) {
    check_ndim(x, "x", 3, "(N, C_in, n_in)");
    check_ndim(w, "w", 3, "(C_out, C_in, k)");
    const index_t N = x.shape(0), C = x.shape(1), n_in = x.shape(2), O = w.shape(0);
    if (w.shape(1) != C || w.shape(2) != k)
        fail("w: expected shape (C_out, " + std::to_string(C) + ", " + std::to_string(k) + ") for x " +
             shape_str(x) + " and k = " + std::to_string(k) + ", got " + shape_str(w));
    check_blas_size(N * C, "N * C_in");
    check_blas_size(n_in, "n_in");
    check_blas_size(O, "C_out");
    check_blas_size(C * k, "C_in * k");
    check_blas_size(k * n_out, "k * n_out");
    check_blas_size(C * k * n_out, "C_in * k * n_out");
    check_blas_size(O * n_out, "C_out * n_out");
    return pcn::RelaxedArgs{N, C, n_in, n_out, k, O};
}

template <typename T>
const T* opt_bias(const oarr<T>& b, index_t O) {
    if (!b) return nullptr;
    if (b->ndim() != 1 || b->shape(0) != O)
        fail("bias: expected shape (" + std::to_string(O) + ",), got " + shape_str(*b));
    return b->data();
}

void check_grad_y(const py::array& gy, const pcn::RelaxedArgs& a) {
    if (gy.ndim() != 3 || gy.shape(0) != a.N || gy.shape(1) != a.O || gy.shape(2) != a.n_out)
        fail("grad_y: expected shape (" + std::to_string(a.N) + ", " + std::to_string(a.O) + ", " +
             std::to_string(a.n_out) + ") (the output of the forward), got " + shape_str(gy));
}

// ------------------------------------------------------------------ relaxed (dense L)
pcn::RelaxedArgs dense_args(const py::array& x, const py::array& L, const py::array& w) {
    check_ndim(x, "x", 3, "(N, C_in, n_in)");
    check_ndim(L, "L", 3, "(n_in, n_out, k)");
    if (L.shape(0) != x.shape(2))
        fail("L: expected shape (" + std::to_string(x.shape(2)) + ", n_out, k) (n_in = x.shape[2]), got " +
             shape_str(L));
    return relaxed_args(x, w, L.shape(1), L.shape(2));
}

// Returns y, or (y, P) with return_patches: P (C_in, N, n_out, k) for relaxed_backward's patches.
template <typename T>
py::object relaxed_forward(arr<T> x, arr<T> L, arr<T> w, oarr<T> bias, bool return_patches) {
    auto a = dense_args(x, L, w);
    const T* b = opt_bias<T>(bias, a.O);
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
    check_grad_y(gy, a);
    const T* pp = nullptr;
    if (patches) {
        const py::array& p = *patches;
        if (p.ndim() != 4 || p.shape(0) != a.C || p.shape(1) != a.N || p.shape(2) != a.n_out || p.shape(3) != a.k)
            fail("patches: expected shape (" + std::to_string(a.C) + ", " + std::to_string(a.N) + ", " +
                 std::to_string(a.n_out) + ", " + std::to_string(a.k) +
                 ") (the P returned by the forward with return_patches=True), got " + shape_str(p));
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

// ------------------------------------------------------------------ receptive (integer index)
// index must be an integer array (n_out, k) with values in [-1, n_in); returns it as C-contiguous int64.
iarr checked_index(const py::array& index, index_t n_in) {
    const char kind = index.dtype().kind();
    if (kind != 'i' && kind != 'u')
        fail("index: expected an integer array (n_out, k) of input positions (-1 = zero padding), got dtype " +
             std::string(py::str(index.dtype())));
    check_ndim(index, "index", 2, "(n_out, k)");
    if (kind == 'u' && index.dtype().itemsize() >= 8) {  // values above INT64_MAX would wrap to negatives
        auto u = py::array_t<std::uint64_t, py::array::c_style | py::array::forcecast>::ensure(index);
        const std::uint64_t* p = u.data();
        for (py::ssize_t t = 0; t < u.size(); ++t)
            if (p[t] >= std::uint64_t(n_in))
                fail("index: value " + std::to_string(p[t]) + " is outside [-1, " + std::to_string(n_in) +
                     ") (n_in = x.shape[2]; -1 = zero padding)");
    }
    iarr out = iarr::ensure(index);
    if (!out) throw py::error_already_set();
    const std::int64_t* p = out.data();
    for (py::ssize_t t = 0; t < out.size(); ++t)
        if (p[t] < -1 || p[t] >= n_in)
            fail("index: value " + std::to_string(p[t]) + " at flat position " + std::to_string(t) +
                 " is outside [-1, " + std::to_string(n_in) + ") (n_in = x.shape[2]; -1 = zero padding)");
    return out;
}

pcn::RelaxedArgs index_args(const py::array& x, const py::array& index, const py::array& w) {
    check_ndim(x, "x", 3, "(N, C_in, n_in)");
    check_ndim(index, "index", 2, "(n_out, k)");
    return relaxed_args(x, w, index.shape(0), index.shape(1));
}

template <typename T>
arr<T> receptive_forward(arr<T> x, py::array index, arr<T> w, oarr<T> bias) {
    auto a = index_args(x, index, w);
    iarr idx = checked_index(index, a.n_in);
    const T* b = opt_bias<T>(bias, a.O);
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
    check_grad_y(gy, a);
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
    m.def("relaxed_conv_backward", &relaxed_backward<T>, "grad_y"_a, "x"_a, "L"_a, "w"_a, "patches"_a = py::none(),
          "need_input"_a = true,
          "need_L"_a = true, "need_weight"_a = true, "need_bias"_a = true);
    m.def("receptive_conv_forward", &receptive_forward<T>, "x"_a, "index"_a, "w"_a, "bias"_a);
    m.def("receptive_conv_backward", &receptive_backward<T>, "grad_y"_a, "x"_a, "index"_a, "w"_a,
          "need_input"_a = true, "need_weight"_a = true, "need_bias"_a = true);
}

}  // namespace

void register_relaxed(py::module_& m) {
    // float64 first: in pybind11's convert pass a float64 array must not be cast down.
    register_typed<double>(m);
    register_typed<float>(m);
}
