// Every shape check of the bindings, in one place. The Python layer
// (pyconvnet.functional) gives friendlier messages first; these are what keeps
// memory safe for anyone calling _core directly: every size a kernel relies on
// is checked here, and a failure is std::invalid_argument, which pybind11
// raises as ValueError naming the argument, what it got and what was expected.
// Also here: the array types the bindings accept, and their output helpers.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/common.h"
#include "kernels/conv.h"
#include "kernels/pool.h"
#include "kernels/relaxed.h"

namespace pcn::bind {

namespace py = pybind11;
using I2 = std::array<index_t, 2>;
using I4 = std::array<index_t, 4>;

// Inputs: C-contiguous arrays of T (forcecast may hand us a converted copy, so
// nothing is ever written into one of these).
template <typename T>
using arr = py::array_t<T, py::array::c_style | py::array::forcecast>;
template <typename T>
using oarr = std::optional<arr<T>>;
// Arrays written in place (a layer's gradient buffers, optimizer state): never
// converted (bind them with .noconvert()), so an update cannot land in a copy.
template <typename T>
using mut = py::array_t<T, py::array::c_style>;
template <typename T>
using outarr = std::optional<mut<T>>;
using iarr = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;

[[noreturn]] inline void fail(const std::string& msg) { throw std::invalid_argument(msg); }

inline std::string shape_str(const py::array& a) {
    std::ostringstream s;
    s << "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
    s << (a.ndim() == 1 ? ",)" : ")");
    return s.str();
}

inline std::vector<py::ssize_t> shape_of(const py::array& x) {
    return std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim());
}

// ---------------------------------------------------------------- generic checks
inline void check_ndim(const py::array& a, const char* name, py::ssize_t nd, const char* layout = nullptr) {
    if (a.ndim() == nd) return;
    const std::string what = layout ? std::string(layout) : std::to_string(nd) + "-D";
    fail(std::string(name) + ": expected a " + what + " array, got shape " + shape_str(a));
}

inline void check_shape(const py::array& a, const char* name, std::initializer_list<index_t> want) {
    bool ok = a.ndim() == py::ssize_t(want.size());
    py::ssize_t i = 0;
    std::ostringstream w;
    w << "(";
    for (index_t v : want) {
        if (ok && a.shape(i) != v) ok = false;
        w << (i ? ", " : "") << v;
        ++i;
    }
    w << (want.size() == 1 ? ",)" : ")");
    if (!ok) fail(std::string(name) + ": expected shape " + w.str() + ", got " + shape_str(a));
}

// `a` has exactly the shape of `like` (named `like_name` in the message).
inline void check_same_shape(const py::array& a, const char* name, const py::array& like, const char* like_name) {
    if (a.ndim() != like.ndim() || !std::equal(like.shape(), like.shape() + like.ndim(), a.shape()))
        fail(std::string(name) + ": expected the shape of " + like_name + " " + shape_str(like) + ", got " +
             shape_str(a));
}

inline void check_max(const index_t* v, int n, const char* name) {
    for (int i = 0; i < n; ++i)
        if (v[i] > kMaxGeometry)
            fail(std::string(name) + ": values above " + std::to_string(kMaxGeometry) + " are not supported, got " +
                 std::to_string(v[i]));
}

// a*b*..., or a ValueError naming `what` when the product leaves int64 (absurd geometry).
inline index_t checked_product(std::initializer_list<index_t> vals, const char* what) {
    index_t r = 1;
    for (index_t v : vals)
        if (v < 0 || __builtin_mul_overflow(r, v, &r)) fail(std::string(what) + " is too large");
    return r;
}

inline void check_pos(const I2& v, const char* name) {
    check_max(v.data(), 2, name);
    if (v[0] < 1 || v[1] < 1)
        fail(std::string(name) + ": expected positive values, got (" + std::to_string(v[0]) + ", " +
             std::to_string(v[1]) + ")");
}

inline void check_nonneg(const index_t* v, int n, const char* name) {
    check_max(v, n, name);
    for (int i = 0; i < n; ++i)
        if (v[i] < 0) fail(std::string(name) + ": expected non-negative values, got " + std::to_string(v[i]));
}

// The bundled OpenBLAS takes 32-bit sizes. `blame` names the arguments that made
// `what` this large, in the caller's words.
inline void check_blas_size(index_t v, const char* what, const char* blame = nullptr) {
    if (v < INT_MAX) return;
    fail(std::string(blame ? blame : what) + ": " + what + " of " + std::to_string(v) +
         " values is more than the 32-bit BLAS takes (at most " + std::to_string(INT_MAX - 1) + ")");
}

// ---------------------------------------------------------------- outputs
// Data of `given` (exactly `want`, writeable), else of a fresh array of that shape; ret holds it.
template <typename T>
T* out_or_new(outarr<T>& given, const char* name, std::initializer_list<index_t> want, py::object& ret) {
    if (given) {
        check_shape(*given, name, want);
        if (!given->writeable()) fail(std::string(name) + ": expected a writeable array");
        ret = *given;
        return given->mutable_data();
    }
    arr<T> a{std::vector<index_t>(want)};
    ret = a;
    return a.mutable_data();
}

// A fresh (N, ...) output when `want`, else nullptr and ret stays None.
template <typename T>
T* new_if(bool want, std::initializer_list<index_t> shape, py::object& ret) {
    if (!want) return nullptr;
    arr<T> a{std::vector<index_t>(shape)};
    ret = a;
    return a.mutable_data();
}

template <typename T>
const T* opt_ptr(const oarr<T>& b, const char* name, index_t n) {
    if (!b) return nullptr;
    check_shape(*b, name, {n});
    return b->data();
}

// An in-place optimizer array: writeable, as many values as the gradient.
template <typename T>
void check_inplace(mut<T>& a, const char* name, const arr<T>& like) {
    if (!a.writeable()) fail(std::string(name) + ": expected a writeable array");
    if (a.size() != like.size())
        fail(std::string(name) + ": expected " + std::to_string(like.size()) + " values (the gradient's), got " +
             shape_str(a));
}

// ---------------------------------------------------------------- convolution
// The conv geometry for input (C, H, W), checking every parameter.
inline ConvArgs conv_args(index_t N, index_t C, index_t H, index_t W, index_t O, index_t kh, index_t kw, const I2& s,
                          const I4& pad, const I2& d, index_t groups, const char* wname) {
    check_pos(s, "stride");
    check_pos(d, "dilation");
    check_nonneg(pad.data(), 4, "padding");
    if (groups < 1) fail("groups: expected a positive integer, got " + std::to_string(groups));
    if (C % groups)
        fail("groups: " + std::to_string(groups) + " does not divide the " + std::to_string(C) + " input channels");
    if (O % groups)
        fail("groups: " + std::to_string(groups) + " does not divide the " + std::to_string(O) + " output channels");
    if (kh < 1 || kw < 1) fail(std::string(wname) + ": kernel size must be positive");
    const index_t OH = conv_out_size(H, kh, s[0], pad[0] + pad[1], d[0]);
    const index_t OW = conv_out_size(W, kw, s[1], pad[2] + pad[3], d[1]);
    if (OH < 1 || OW < 1)
        fail("kernel size (" + std::to_string(kh) + ", " + std::to_string(kw) + ") with dilation (" +
             std::to_string(d[0]) + ", " + std::to_string(d[1]) + ") is larger than the padded input (" +
             std::to_string(H + pad[0] + pad[1]) + ", " + std::to_string(W + pad[2] + pad[3]) + ")");
    ConvArgs a{N, O, groups, Geom{C, H, W, kh, kw, s[0], s[1], pad[0], pad[2], d[0], d[1], OH, OW}};
    check_blas_size(checked_product({C / groups, kh, kw, OH, OW}, "padding: the im2col buffer"),
                    "the im2col buffer (C_in/groups*kh*kw x OH*OW)", "padding or input size");
    check_blas_size(checked_product({H, W}, "x: the image plane"), "the image plane (H*W)", "x");
    return a;
}

// Transposed conv: the conv whose input is y (Cout, OH, OW) and output is x (Cin, H, W).
inline ConvArgs transpose_args(index_t N, index_t Cin, index_t H, index_t W, const py::array& w, index_t groups,
                               const I2& s, const I2& p, const I2& op, const I2& d) {
    check_ndim(w, "weight", 4);
    check_pos(s, "stride");
    check_pos(d, "dilation");
    check_nonneg(p.data(), 2, "padding");
    check_nonneg(op.data(), 2, "output_padding");
    if (groups < 1) fail("groups: expected a positive integer, got " + std::to_string(groups));
    if (w.shape(0) != Cin)
        fail("weight: expected shape (" + std::to_string(Cin) + ", C_out/groups, kh, kw), got " + shape_str(w));
    if (Cin % groups)
        fail("groups: " + std::to_string(groups) + " does not divide the " + std::to_string(Cin) + " input channels");
    for (int i = 0; i < 2; ++i)
        if (op[i] >= s[i] && op[i] >= d[i])
            fail("output_padding: must be smaller than stride or dilation, got " + std::to_string(op[i]));
    const index_t Cout = w.shape(1) * groups, kh = w.shape(2), kw = w.shape(3);
    const index_t OH = conv_transpose_out_size(H, kh, s[0], p[0], d[0], op[0]);
    const index_t OW = conv_transpose_out_size(W, kw, s[1], p[1], d[1], op[1]);
    if (OH < 1 || OW < 1 || kh < 1 || kw < 1)
        fail("padding: the output size (" + std::to_string(OH) + ", " + std::to_string(OW) + ") is not positive");
    ConvArgs a{N, Cin, groups, Geom{Cout, OH, OW, kh, kw, s[0], s[1], p[0], p[1], d[0], d[1], H, W}};
    check_blas_size(checked_product({w.shape(1), kh, kw, H, W}, "x: the column buffer"),
                    "the column buffer (C_out/groups*kh*kw x H*W)", "x");
    check_blas_size(checked_product({OH, OW}, "stride: the output plane"), "the output plane", "stride or padding");
    return a;
}

inline Geom unfold_geom(index_t C, index_t H, index_t W, const I2& k, const I2& d, const I2& p, const I2& s) {
    check_pos(k, "kernel_size");
    check_pos(d, "dilation");
    check_pos(s, "stride");
    check_nonneg(p.data(), 2, "padding");
    const index_t OH = conv_out_size(H, k[0], s[0], 2 * p[0], d[0]);
    const index_t OW = conv_out_size(W, k[1], s[1], 2 * p[1], d[1]);
    if (OH < 1 || OW < 1) fail("kernel_size: the (dilated) kernel is larger than the padded input");
    check_blas_size(checked_product({C, k[0], k[1], OH, OW}, "padding: the column buffer"),
                    "the column buffer (C*kh*kw x L)", "padding or input size");
    return Geom{C, H, W, k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1], OH, OW};
}

// ---------------------------------------------------------------- pooling
inline PoolArgs pool_args(index_t N, index_t C, index_t H, index_t W, const I2& k, const I2& s, const I2& p,
                          const I2& d, bool ceil_mode) {
    check_pos(k, "kernel_size");
    check_pos(s, "stride");
    check_pos(d, "dilation");
    check_nonneg(p.data(), 2, "padding");
    for (int i = 0; i < 2; ++i)
        if (2 * p[i] > k[i])
            fail("padding: should be at most half of kernel_size, got padding " + std::to_string(p[i]) +
                 " for kernel_size " + std::to_string(k[i]));
    const index_t OH = pool_out_size(H, k[0], s[0], p[0], d[0], ceil_mode);
    const index_t OW = pool_out_size(W, k[1], s[1], p[1], d[1], ceil_mode);
    if (OH < 1 || OW < 1)
        fail("kernel_size: the pooling window is larger than the padded input (" + std::to_string(H + 2 * p[0]) +
             ", " + std::to_string(W + 2 * p[1]) + ")");
    return PoolArgs{N * C, H, W, OH, OW, k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1]};
}

// ---------------------------------------------------------------- (N, C, *spatial) ops
struct NCS {
    index_t N, C, S;
};
inline NCS ncs(const py::array& x, const char* name) {
    if (x.ndim() < 2) fail(std::string(name) + ": expected (N, C) or (N, C, *spatial), got shape " + shape_str(x));
    NCS r{x.shape(0), x.shape(1), 1};
    for (py::ssize_t i = 2; i < x.ndim(); ++i) r.S *= x.shape(i);
    return r;
}

// ---------------------------------------------------------------- labels
using labels_arr = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;

// labels: integers (N,) in [0, C). Returns them as C-contiguous int64.
inline labels_arr checked_labels(const py::array& labels, index_t N, index_t C) {
    const char kind = labels.dtype().kind();
    if (kind != 'i' && kind != 'u')
        fail("labels: expected integer class indices, got dtype " + std::string(py::str(labels.dtype())));
    if (labels.ndim() != 1 || labels.shape(0) != N)
        fail("labels: expected integer labels of shape (" + std::to_string(N) + ",) for logits (" +
             std::to_string(N) + ", " + std::to_string(C) + "), got " + shape_str(labels));
    if (kind == 'u' && labels.dtype().itemsize() >= 8) {  // above INT64_MAX would wrap to negatives
        auto u = py::array_t<std::uint64_t, py::array::c_style | py::array::forcecast>::ensure(labels);
        for (py::ssize_t i = 0; i < u.size(); ++i)
            if (u.data()[i] >= std::uint64_t(C))
                fail("labels: class indices must lie in [0, " + std::to_string(C) + "), got " +
                     std::to_string(u.data()[i]));
    }
    labels_arr out = labels_arr::ensure(labels);
    if (!out) throw py::error_already_set();
    const std::int64_t* p = out.data();
    std::int64_t lo = 0, hi = 0;
    for (py::ssize_t i = 0; i < out.size(); ++i) {
        lo = i ? std::min(lo, p[i]) : p[i];
        hi = i ? std::max(hi, p[i]) : p[i];
    }
    if (out.size() && (lo < 0 || hi >= C))
        fail("labels: class indices must lie in [0, " + std::to_string(C) + "), got range [" + std::to_string(lo) +
             ", " + std::to_string(hi) + "]");
    return out;
}

// ---------------------------------------------------------------- relaxed receptive fields
// x (N, C, n_in), w (O, C, k): the sizes both kernels share. k and n_out come from L or index.
inline RelaxedArgs relaxed_args(const py::array& x, const py::array& w, index_t n_out, index_t k) {
    check_ndim(x, "x", 3, "(N, C_in, n_in)");
    check_ndim(w, "w", 3, "(C_out, C_in, k)");
    const index_t N = x.shape(0), C = x.shape(1), n_in = x.shape(2), O = w.shape(0);
    if (w.shape(1) != C || w.shape(2) != k)
        fail("w: expected shape (C_out, " + std::to_string(C) + ", " + std::to_string(k) + ") for x " +
             shape_str(x) + " and k = " + std::to_string(k) + ", got " + shape_str(w));
    check_blas_size(N * C, "N * C_in", "x");
    check_blas_size(n_in, "n_in", "x");
    check_blas_size(O, "C_out", "w");
    check_blas_size(C * k, "C_in * k", "w");
    check_blas_size(k * n_out, "k * n_out", "w");
    check_blas_size(C * k * n_out, "C_in * k * n_out", "w");
    check_blas_size(O * n_out, "C_out * n_out", "w");
    return RelaxedArgs{N, C, n_in, n_out, k, O};
}

inline RelaxedArgs dense_args(const py::array& x, const py::array& L, const py::array& w) {
    check_ndim(x, "x", 3, "(N, C_in, n_in)");
    check_ndim(L, "L", 3, "(n_in, n_out, k)");
    if (L.shape(0) != x.shape(2))
        fail("L: expected shape (" + std::to_string(x.shape(2)) + ", n_out, k) (n_in = x.shape[2]), got " +
             shape_str(L));
    return relaxed_args(x, w, L.shape(1), L.shape(2));
}

inline RelaxedArgs index_args(const py::array& x, const py::array& index, const py::array& w) {
    check_ndim(x, "x", 3, "(N, C_in, n_in)");
    check_ndim(index, "index", 2, "(n_out, k)");
    return relaxed_args(x, w, index.shape(0), index.shape(1));
}

inline void check_relaxed_grad_out(const py::array& gy, const RelaxedArgs& a) {
    if (gy.ndim() != 3 || gy.shape(0) != a.N || gy.shape(1) != a.O || gy.shape(2) != a.n_out)
        fail("grad_out: expected shape (" + std::to_string(a.N) + ", " + std::to_string(a.O) + ", " +
             std::to_string(a.n_out) + ") (the output of the forward), got " + shape_str(gy));
}

inline void check_patches(const py::array& p, const RelaxedArgs& a) {
    if (p.ndim() != 4 || p.shape(0) != a.C || p.shape(1) != a.N || p.shape(2) != a.n_out || p.shape(3) != a.k)
        fail("patches: expected shape (" + std::to_string(a.C) + ", " + std::to_string(a.N) + ", " +
             std::to_string(a.n_out) + ", " + std::to_string(a.k) +
             ") (the P returned by the forward with return_patches=True), got " + shape_str(p));
}

// index must be an integer array (n_out, k) with values in [-1, n_in); returns it as C-contiguous int64.
inline iarr checked_index(const py::array& index, index_t n_in) {
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

// ---------------------------------------------------------------- LSTM
struct LstmDims {
    index_t N, T, I, H;
};
// x (N, T, I), w_ih (4H, I), w_hh (4H, H); N, T, H >= 1.
inline LstmDims lstm_dims(const py::array& x, const py::array& w_ih, const py::array& w_hh) {
    check_ndim(x, "x", 3, "(N, T, input_size)");
    check_ndim(w_ih, "weight_ih", 2, "(4*hidden_size, input_size)");
    check_ndim(w_hh, "weight_hh", 2, "(4*hidden_size, hidden_size)");
    const index_t N = x.shape(0), T = x.shape(1), I = x.shape(2), G = w_ih.shape(0);
    if (G < 4 || G % 4)
        fail("weight_ih: expected shape (4*hidden_size, input_size) with hidden_size >= 1, got " + shape_str(w_ih));
    const index_t H = G / 4;
    if (w_ih.shape(1) != I)
        fail("weight_ih: expected shape (" + std::to_string(G) + ", " + std::to_string(I) + ") (input_size = x.shape[2]), got " +
             shape_str(w_ih));
    if (w_hh.shape(0) != G || w_hh.shape(1) != H)
        fail("weight_hh: expected shape (" + std::to_string(G) + ", " + std::to_string(H) + "), got " + shape_str(w_hh));
    if (N < 1 || T < 1 || I < 1)
        fail("x: expected a non-empty (N, T, input_size) array, got shape " + shape_str(x));
    check_blas_size(checked_product({N, T, G}, "x: the gate buffer"), "the gate buffer (N*T x 4*hidden_size)", "x");
    check_blas_size(checked_product({N, T, I}, "x"), "the input (N*T x input_size)", "x");
    check_blas_size(checked_product({G, std::max(I, H)}, "weight_ih"), "the weights", "weight_ih");
    return LstmDims{N, T, I, H};
}

}  // namespace pcn::bind
