// pybind11 bindings (bind_relaxed.cpp has the seed-003 ones; bind_common.h what
// both share). Each binding checks
// shapes (check_* helpers below: every size the kernels rely on), allocates the
// outputs, releases the GIL and calls the kernel. The Python layer
// (pyconvnet/functional.py) gives friendlier messages first; these checks are
// what keeps memory safe for anyone calling _core directly.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "bind_common.h"

#include <array>
#include <climits>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>

#include "activation.h"
#include "loss.h"
#include "dropout.h"
#include "batchnorm.h"
#include "conv.h"
#include "conv_direct.h"
#include "linear.h"
#include "pool.h"
#include "update.h"
#include "cblas.h"

namespace py = pybind11;
using pcn::index_t;
using I2 = std::array<index_t, 2>;
using I4 = std::array<index_t, 4>;

using pcn::bind::arr;
using pcn::bind::fail;
using pcn::bind::oarr;
using pcn::bind::shape_str;

namespace {

void check_ndim(const py::array& a, const char* name, py::ssize_t nd) {
    if (a.ndim() != nd)
        fail(std::string(name) + ": expected a " + std::to_string(nd) + "-D array, got shape " + shape_str(a));
}

void check_shape(const py::array& a, const char* name, std::initializer_list<index_t> want) {
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

void check_max(const index_t* v, int n, const char* name) {
    for (int i = 0; i < n; ++i)
        if (v[i] > pcn::kMaxGeometry)
            fail(std::string(name) + ": values above " + std::to_string(pcn::kMaxGeometry) + " are not supported, got " +
                 std::to_string(v[i]));
}

// a*b*..., or a ValueError when the product leaves int64 (absurd geometry).
index_t checked_product(std::initializer_list<index_t> vals, const char* what) {
    index_t r = 1;
    for (index_t v : vals)
        if (v < 0 || __builtin_mul_overflow(r, v, &r)) fail(std::string(what) + " is too large");
    return r;
}

void check_pos(const I2& v, const char* name) {
    check_max(v.data(), 2, name);
    if (v[0] < 1 || v[1] < 1)
        fail(std::string(name) + ": expected positive values, got (" + std::to_string(v[0]) + ", " +
             std::to_string(v[1]) + ")");
}

void check_nonneg(const index_t* v, int n, const char* name) {
    check_max(v, n, name);
    for (int i = 0; i < n; ++i)
        if (v[i] < 0) fail(std::string(name) + ": expected non-negative values, got " + std::to_string(v[i]));
}

void check_blas_size(index_t v, const char* what) {
    if (v >= INT_MAX) fail(std::string(what) + " too large for 32-bit BLAS: " + std::to_string(v));
}

// Builds the conv geometry for input (C,H,W), checking every parameter.
pcn::ConvArgs conv_args(index_t N, index_t C, index_t H, index_t W, index_t O, index_t kh, index_t kw, const I2& s,
                        const I4& pad, const I2& d, index_t groups, const char* wname) {
    check_pos(s, "stride");
    check_pos(d, "dilation");
    check_nonneg(pad.data(), 4, "padding");
    if (groups < 1) fail("groups: expected a positive integer, got " + std::to_string(groups));
    if (C % groups) fail("groups: " + std::to_string(groups) + " does not divide the " + std::to_string(C) +
                         " input channels");
    if (O % groups) fail("groups: " + std::to_string(groups) + " does not divide the " + std::to_string(O) +
                         " output channels");
    if (kh < 1 || kw < 1) fail(std::string(wname) + ": kernel size must be positive");
    const index_t OH = pcn::conv_out_size(H, kh, s[0], pad[0] + pad[1], d[0]);
    const index_t OW = pcn::conv_out_size(W, kw, s[1], pad[2] + pad[3], d[1]);
    if (OH < 1 || OW < 1)
        fail("kernel size (" + std::to_string(kh) + ", " + std::to_string(kw) + ") with dilation (" +
             std::to_string(d[0]) + ", " + std::to_string(d[1]) + ") is larger than the padded input (" +
             std::to_string(H + pad[0] + pad[1]) + ", " + std::to_string(W + pad[2] + pad[3]) + ")");
    pcn::ConvArgs a{N, O, groups, pcn::Geom{C, H, W, kh, kw, s[0], s[1], pad[0], pad[2], d[0], d[1], OH, OW}};
    check_blas_size(checked_product({C / groups, kh, kw, OH, OW}, "im2col buffer"), "im2col buffer");
    check_blas_size(checked_product({H, W}, "image plane"), "image plane");
    return a;
}

// A caller's preallocated gradient buffer (a layer's own grad array): written in place.
template <typename T>
using outarr = std::optional<py::array_t<T, py::array::c_style>>;

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

template <typename T>
const T* opt_ptr(const oarr<T>& b, const char* name, index_t n) {
    if (!b) return nullptr;
    check_shape(*b, name, {n});
    return b->data();
}

// ---------------------------------------------------------------- convolution
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
    check_shape(gy, "grad_output", {N, O, a.g.OH, a.g.OW});
    py::object gx = py::none(), gw = py::none(), gb = py::none();
    arr<T> ax;
    const T *gyp = gy.data(), *xp = x.data(), *wp = w.data();
    T *gxp = nullptr, *gwp = nullptr, *gbp = nullptr;
    if (need_x) { ax = arr<T>({N, C, a.g.H, a.g.W}); gxp = ax.mutable_data(); gx = ax; }
    if (need_w) gwp = out_or_new(gw_out, "grad_weight_out", {O, C / groups, a.g.kh, a.g.kw}, gw);
    if (need_b) gbp = out_or_new(gb_out, "grad_bias_out", {O}, gb);
    {
        py::gil_scoped_release nogil;
        if (gxp) pcn::conv2d_backward_data(gyp, wp, gxp, a);
        if (gwp) pcn::conv2d_backward_weight(gyp, xp, gwp, a);
        if (gbp) pcn::channel_sum(gyp, gbp, N, O, a.g.OH * a.g.OW);
    }
    return py::make_tuple(gx, gw, gb);
}

// Transposed conv: the conv whose input is y (Cout, OH, OW) and output is x (Cin, H, W).
pcn::ConvArgs transpose_args(index_t N, index_t Cin, index_t H, index_t W, const py::array& w, index_t groups,
                             const I2& s, const I2& p, const I2& op, const I2& d) {
    check_ndim(w, "weight", 4);
    check_pos(s, "stride");
    check_pos(d, "dilation");
    check_nonneg(p.data(), 2, "padding");
    check_nonneg(op.data(), 2, "output_padding");
    if (groups < 1) fail("groups: expected a positive integer, got " + std::to_string(groups));
    if (w.shape(0) != Cin) fail("weight: expected shape (" + std::to_string(Cin) + ", C_out/groups, kh, kw), got " + shape_str(w));
    if (Cin % groups) fail("groups: " + std::to_string(groups) + " does not divide the " + std::to_string(Cin) + " input channels");
    for (int i = 0; i < 2; ++i)
        if (op[i] >= s[i] && op[i] >= d[i])
            fail("output_padding: must be smaller than stride or dilation, got " + std::to_string(op[i]));
    const index_t Cout = w.shape(1) * groups, kh = w.shape(2), kw = w.shape(3);
    const index_t OH = pcn::conv_transpose_out_size(H, kh, s[0], p[0], d[0], op[0]);
    const index_t OW = pcn::conv_transpose_out_size(W, kw, s[1], p[1], d[1], op[1]);
    if (OH < 1 || OW < 1 || kh < 1 || kw < 1)
        fail("conv_transpose2d: output size (" + std::to_string(OH) + ", " + std::to_string(OW) + ") is not positive");
    pcn::ConvArgs a{N, Cin, groups, pcn::Geom{Cout, OH, OW, kh, kw, s[0], s[1], p[0], p[1], d[0], d[1], H, W}};
    check_blas_size(checked_product({w.shape(1), kh, kw, H, W}, "col buffer"), "col buffer");
    check_blas_size(checked_product({OH, OW}, "image plane"), "image plane");
    return a;
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
py::tuple conv_transpose2d_backward(arr<T> gy, arr<T> x, arr<T> w, I2 s, I2 p, I2 op, I2 d, index_t groups) {
    check_ndim(x, "input", 4);
    auto a = transpose_args(x.shape(0), x.shape(1), x.shape(2), x.shape(3), w, groups, s, p, op, d);
    check_shape(gy, "grad_output", {a.N, a.g.C, a.g.H, a.g.W});
    arr<T> gx({a.N, a.O, a.g.OH, a.g.OW}), gw({w.shape(0), w.shape(1), w.shape(2), w.shape(3)}), gb({a.g.C});
    const T *gyp = gy.data(), *xp = x.data(), *wp = w.data();
    T *gxp = gx.mutable_data(), *gwp = gw.mutable_data(), *gbp = gb.mutable_data();
    {
        py::gil_scoped_release nogil;
        pcn::conv2d_forward<T>(gyp, wp, nullptr, gxp, a);
        pcn::conv2d_backward_weight(xp, gyp, gwp, a);
        pcn::channel_sum(gyp, gbp, a.N, a.g.C, a.g.H * a.g.W);
    }
    return py::make_tuple(gx, gw, gb);
}

pcn::Geom unfold_geom(index_t C, index_t H, index_t W, const I2& k, const I2& d, const I2& p, const I2& s) {
    check_pos(k, "kernel_size");
    check_pos(d, "dilation");
    check_pos(s, "stride");
    check_nonneg(p.data(), 2, "padding");
    const index_t OH = pcn::conv_out_size(H, k[0], s[0], 2 * p[0], d[0]);
    const index_t OW = pcn::conv_out_size(W, k[1], s[1], 2 * p[1], d[1]);
    if (OH < 1 || OW < 1) fail("kernel_size: the (dilated) kernel is larger than the padded input");
    check_blas_size(checked_product({C, k[0], k[1], OH, OW}, "column buffer"), "column buffer");
    return pcn::Geom{C, H, W, k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1], OH, OW};
}

template <typename T>
arr<T> unfold(arr<T> x, I2 k, I2 d, I2 p, I2 s) {
    check_ndim(x, "input", 4);
    const index_t N = x.shape(0);
    auto g = unfold_geom(x.shape(1), x.shape(2), x.shape(3), k, d, p, s);
    const index_t R = g.C * g.kh * g.kw, L = g.OH * g.OW;
    arr<T> y({N, R, L});
    const T* xp = x.data();
    T* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        const bool big = N * R * L > 65536, across = N >= pcn::max_threads();
#pragma omp parallel for schedule(static) if (big && across && N > 1)
        for (index_t n = 0; n < N; ++n) pcn::im2col(xp + n * g.C * g.H * g.W, g, yp + n * R * L, L, big && !across);
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
        const index_t L = g.OH * g.OW, img = g.C * g.H * g.W;
        std::fill(yp, yp + N * img, T(0));
        const bool big = N * R * L > 65536, across = N >= pcn::max_threads();
#pragma omp parallel for schedule(static) if (big && across && N > 1)
        for (index_t n = 0; n < N; ++n) pcn::col2im(cp + n * R * L, g, L, yp + n * img, big && !across);
    }
    return y;
}

// ---------------------------------------------------------------- pooling
pcn::PoolArgs pool_args(index_t N, index_t C, index_t H, index_t W, const I2& k, const I2& s, const I2& p,
                        const I2& d, bool ceil_mode) {
    check_pos(k, "kernel_size");
    check_pos(s, "stride");
    check_pos(d, "dilation");
    check_nonneg(p.data(), 2, "padding");
    for (int i = 0; i < 2; ++i)
        if (2 * p[i] > k[i])
            fail("padding: should be at most half of kernel_size, got padding " + std::to_string(p[i]) +
                 " for kernel_size " + std::to_string(k[i]));
    const index_t OH = pcn::pool_out_size(H, k[0], s[0], p[0], d[0], ceil_mode);
    const index_t OW = pcn::pool_out_size(W, k[1], s[1], p[1], d[1], ceil_mode);
    if (OH < 1 || OW < 1)
        fail("kernel_size: the pooling window is larger than the padded input (" + std::to_string(H + 2 * p[0]) + ", " +
             std::to_string(W + 2 * p[1]) + ")");
    return pcn::PoolArgs{N * C, H, W, OH, OW, k[0], k[1], s[0], s[1], p[0], p[1], d[0], d[1]};
}

template <typename T>
py::tuple max_pool2d_forward(arr<T> x, I2 k, I2 s, I2 p, I2 d, bool ceil_mode) {
    check_ndim(x, "input", 4);
    auto a = pool_args(x.shape(0), x.shape(1), x.shape(2), x.shape(3), k, s, p, d, ceil_mode);
    arr<T> y({x.shape(0), x.shape(1), a.OH, a.OW});
    py::array_t<std::int64_t> idx({x.shape(0), x.shape(1), a.OH, a.OW});
    const T* xp = x.data();
    T* yp = y.mutable_data();
    std::int64_t* ip = idx.mutable_data();
    {
        py::gil_scoped_release nogil;
        pcn::max_pool2d_forward(xp, yp, ip, a);
    }
    return py::make_tuple(y, idx);
}

template <typename T>
arr<T> max_pool2d_backward(arr<T> gy, py::array_t<std::int64_t, py::array::c_style | py::array::forcecast> idx,
                           std::array<index_t, 4> in_shape) {
    check_ndim(gy, "grad_output", 4);
    check_nonneg(in_shape.data(), 4, "input_shape");
    if (gy.shape(0) != in_shape[0] || gy.shape(1) != in_shape[1])
        fail("grad_output: batch/channel dims " + shape_str(gy) + " do not match input_shape");
    check_shape(idx, "indices", {gy.shape(0), gy.shape(1), gy.shape(2), gy.shape(3)});
    const index_t HW = in_shape[2] * in_shape[3], total = idx.size();
    const std::int64_t* ip = idx.data();
    for (index_t i = 0; i < total; ++i)
        if (ip[i] < -1 || ip[i] >= HW)
            fail("indices: value " + std::to_string(ip[i]) + " is outside [0, " + std::to_string(HW) +
                 ") (flat positions in an input plane of (" + std::to_string(in_shape[2]) + ", " +
                 std::to_string(in_shape[3]) + "); -1 marks an empty window)");
    pcn::PoolArgs a{in_shape[0] * in_shape[1], in_shape[2], in_shape[3], gy.shape(2), gy.shape(3), 1, 1, 1, 1, 0, 0, 1, 1};
    arr<T> gx({in_shape[0], in_shape[1], in_shape[2], in_shape[3]});
    const T* gp = gy.data();
    T* xp = gx.mutable_data();
    {
        py::gil_scoped_release nogil;
        pcn::max_pool2d_backward(gp, ip, xp, a);
    }
    return gx;
}

template <typename T>
arr<T> avg_pool2d_forward(arr<T> x, I2 k, I2 s, I2 p, bool ceil_mode, bool cip) {
    check_ndim(x, "input", 4);
    auto a = pool_args(x.shape(0), x.shape(1), x.shape(2), x.shape(3), k, s, p, I2{1, 1}, ceil_mode);
    arr<T> y({x.shape(0), x.shape(1), a.OH, a.OW});
    const T* xp = x.data();
    T* yp = y.mutable_data();
    {
        py::gil_scoped_release nogil;
        pcn::avg_pool2d_forward(xp, yp, a, cip);
    }
    return y;
}

template <typename T>
arr<T> avg_pool2d_backward(arr<T> gy, std::array<index_t, 4> in_shape, I2 k, I2 s, I2 p, bool ceil_mode, bool cip) {
    check_nonneg(in_shape.data(), 4, "input_shape");
    auto a = pool_args(in_shape[0], in_shape[1], in_shape[2], in_shape[3], k, s, p, I2{1, 1}, ceil_mode);
    check_shape(gy, "grad_output", {in_shape[0], in_shape[1], a.OH, a.OW});
    arr<T> gx({in_shape[0], in_shape[1], in_shape[2], in_shape[3]});
    const T* gp = gy.data();
    T* xp = gx.mutable_data();
    {
        py::gil_scoped_release nogil;
        pcn::avg_pool2d_backward(gp, xp, a, cip);
    }
    return gx;
}

// ---------------------------------------------------------------- batch norm
struct NCS {
    index_t N, C, S;
};
NCS ncs(const py::array& x, const char* name) {
    if (x.ndim() < 2) fail(std::string(name) + ": expected (N, C) or (N, C, *spatial), got shape " + shape_str(x));
    NCS r{x.shape(0), x.shape(1), 1};
    for (py::ssize_t i = 2; i < x.ndim(); ++i) r.S *= x.shape(i);
    return r;
}

std::vector<py::ssize_t> shape_of(const py::array& x) { return std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()); }

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
    if (gy.ndim() != x.ndim() || !std::equal(x.shape(), x.shape() + x.ndim(), gy.shape()))
        fail("grad_output: expected the input's shape " + shape_str(x) + ", got " + shape_str(gy));
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

// ---------------------------------------------------------------- linear
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
    check_shape(gy, "grad_output", {N, out});
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

// ---------------------------------------------------------------- activations
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
    if (gy.ndim() != y.ndim() || !std::equal(y.shape(), y.shape() + y.ndim(), gy.shape()))
        fail("grad_output: expected the shape of the forward output y " + shape_str(y) + ", got " + shape_str(gy));
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

// ---------------------------------------------------------------- softmax cross-entropy
using labels_arr = py::array_t<std::int64_t, py::array::c_style | py::array::forcecast>;

// labels: integers (N,) in [0, C). Returns them as C-contiguous int64.
labels_arr checked_labels(const py::array& labels, index_t N, index_t C) {
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

// (total, p): the summed loss (a Python float) and softmax(logits)
template <typename T>
py::tuple softmax_xent_forward(arr<T> logits, py::array labels) {
    if (logits.ndim() != 2) fail("logits: expected (N, C), got shape " + shape_str(logits));
    const index_t N = logits.shape(0), C = logits.shape(1);
    if (C < 1 && N > 0) fail("logits: expected at least one class, got shape " + shape_str(logits));
    labels_arr lab = checked_labels(labels, N, C);
    arr<T> p({N, C});
    const T* lp = logits.data();
    const std::int64_t* yp = lab.data();
    T* pp = p.mutable_data();
    double total;
    {
        py::gil_scoped_release nogil;
        total = pcn::softmax_xent_forward<T>(lp, yp, pp, N, C);
    }
    return py::make_tuple(total, p);
}

template <typename T>
arr<T> softmax_xent_backward(arr<T> p, py::array labels, double scale) {
    if (p.ndim() != 2) fail("p: expected (N, C), got shape " + shape_str(p));
    const index_t N = p.shape(0), C = p.shape(1);
    labels_arr lab = checked_labels(labels, N, C);
    arr<T> g({N, C});
    const T* pp = p.data();
    const std::int64_t* yp = lab.data();
    T* gp = g.mutable_data();
    {
        py::gil_scoped_release nogil;
        pcn::softmax_xent_backward<T>(pp, yp, T(scale), gp, N, C);
    }
    return g;
}

// ---------------------------------------------------------------- dropout
using mask_arr = py::array_t<bool, py::array::c_style | py::array::forcecast>;

// (y, mask): mask a bool array of x's shape. threshold = p * 2^32 (the caller has checked p in [0, 1)).
template <typename T>
py::tuple dropout_forward(arr<T> x, double p, std::uint64_t key) {
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
        pcn::dropout_forward<T>(xp, yp, mp, n, thr, T(1.0 / (1.0 - p)), key);
    }
    return py::make_tuple(y, mask);
}

template <typename T>
arr<T> dropout_backward(arr<T> gy, py::array mask, double scale) {
    if (mask.dtype().kind() != 'b')
        fail("mask: expected the bool mask of the forward, got dtype " + std::string(py::str(mask.dtype())));
    mask_arr m = mask_arr::ensure(mask);
    if (!m) throw py::error_already_set();
    if (m.ndim() != gy.ndim() || !std::equal(gy.shape(), gy.shape() + gy.ndim(), m.shape()))
        fail("grad_output: expected the shape of the mask " + shape_str(m) + ", got " + shape_str(gy));
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

// ---------------------------------------------------------------- optimizer steps
// In place: p and v must already be C-contiguous, writeable arrays of T
// (noconvert below, so a converted copy can never swallow the update).
template <typename T>
using mut = py::array_t<T, py::array::c_style>;

template <typename T>
void check_inplace(mut<T>& a, const char* name, const arr<T>& like) {
    if (!a.writeable()) fail(std::string(name) + ": expected a writeable array");
    if (a.size() != like.size())
        fail(std::string(name) + ": expected " + std::to_string(like.size()) + " values (the gradient's), got " +
             shape_str(a));
}

template <typename T>
void sgd_step(mut<T> p, arr<T> g, double lr, double wd) {
    check_inplace(p, "param", g);
    T* pp = p.mutable_data();
    const T* gp = g.data();
    const index_t n = g.size();
    py::gil_scoped_release nogil;
    pcn::sgd_step<T>(pp, gp, T(lr), T(wd), n);
}

template <typename T>
void momentum_step(mut<T> p, arr<T> g, mut<T> v, double lr, double momentum, double wd) {
    check_inplace(p, "param", g);
    check_inplace(v, "velocity", g);
    T *pp = p.mutable_data(), *vp = v.mutable_data();
    const T* gp = g.data();
    const index_t n = g.size();
    py::gil_scoped_release nogil;
    pcn::momentum_step<T>(pp, gp, vp, T(lr), T(momentum), T(wd), n);
}

template <typename T>
void adadelta_step(mut<T> p, arr<T> g, mut<T> h, mut<T> s, double lr, double rho, double eps, double wd) {
    check_inplace(p, "param", g);
    check_inplace(h, "h", g);
    check_inplace(s, "s", g);
    T *pp = p.mutable_data(), *hp = h.mutable_data(), *sp = s.mutable_data();
    const T* gp = g.data();
    const index_t n = g.size();
    py::gil_scoped_release nogil;
    pcn::adadelta_step<T>(pp, gp, hp, sp, lr, rho, eps, wd, n);
}

template <typename T>
void adam_step(mut<T> p, arr<T> g, mut<T> m, mut<T> v, double b1, double b2, double eps, double c2, double step,
               double wd) {
    check_inplace(p, "param", g);
    check_inplace(m, "m", g);
    check_inplace(v, "v", g);
    T *pp = p.mutable_data(), *mp = m.mutable_data(), *vp = v.mutable_data();
    const T* gp = g.data();
    const index_t n = g.size();
    py::gil_scoped_release nogil;
    pcn::adam_step<T>(pp, gp, mp, vp, b1, b2, eps, c2, step, wd, n);
}

template <typename T>
void register_kernels(py::module_& m) {
    using namespace py::literals;
    m.def("conv2d_forward", &conv2d_forward<T>, "x"_a, "w"_a, "bias"_a, "stride"_a, "padding"_a, "dilation"_a, "groups"_a);
    m.def("conv2d_backward", &conv2d_backward<T>, "grad_output"_a, "x"_a, "w"_a, "stride"_a, "padding"_a, "dilation"_a,
          "groups"_a, "need_input"_a = true, "need_weight"_a = true, "need_bias"_a = true,
          "grad_weight_out"_a.noconvert() = py::none(), "grad_bias_out"_a.noconvert() = py::none());
    m.def("conv_transpose2d_forward", &conv_transpose2d_forward<T>, "x"_a, "w"_a, "bias"_a, "stride"_a, "padding"_a,
          "output_padding"_a, "dilation"_a, "groups"_a);
    m.def("conv_transpose2d_backward", &conv_transpose2d_backward<T>, "grad_output"_a, "x"_a, "w"_a, "stride"_a,
          "padding"_a, "output_padding"_a, "dilation"_a, "groups"_a);
    m.def("unfold", &unfold<T>, "x"_a, "kernel_size"_a, "dilation"_a, "padding"_a, "stride"_a);
    m.def("fold", &fold<T>, "cols"_a, "output_size"_a, "kernel_size"_a, "dilation"_a, "padding"_a, "stride"_a);
    m.def("max_pool2d_forward", &max_pool2d_forward<T>, "x"_a, "kernel_size"_a, "stride"_a, "padding"_a, "dilation"_a,
          "ceil_mode"_a);
    m.def("max_pool2d_backward", &max_pool2d_backward<T>, "grad_output"_a, "indices"_a, "input_shape"_a);
    m.def("avg_pool2d_forward", &avg_pool2d_forward<T>, "x"_a, "kernel_size"_a, "stride"_a, "padding"_a,
          "ceil_mode"_a, "count_include_pad"_a);
    m.def("avg_pool2d_backward", &avg_pool2d_backward<T>, "grad_output"_a, "input_shape"_a, "kernel_size"_a,
          "stride"_a, "padding"_a, "ceil_mode"_a, "count_include_pad"_a);
    m.def("batch_norm_train", &batch_norm_train<T>, "x"_a, "weight"_a, "bias"_a, "eps"_a);
    m.def("batch_norm_eval", &batch_norm_eval<T>, "x"_a, "mean"_a, "var"_a, "weight"_a, "bias"_a, "eps"_a);
    m.def("batch_norm_backward", &batch_norm_backward<T>, "grad_output"_a, "x"_a, "weight"_a, "mean"_a, "invstd"_a);
    m.def("relu_forward", &unary<T, pcn::relu_forward<T>>, "x"_a);
    m.def("relu_backward", &unary_backward<T, pcn::relu_backward<T>>, "grad_output"_a, "y"_a);
    m.def("sgd_step", &sgd_step<T>, "param"_a.noconvert(), "grad"_a, "lr"_a, "weight_decay"_a);
    m.def("momentum_step", &momentum_step<T>, "param"_a.noconvert(), "grad"_a, "velocity"_a.noconvert(), "lr"_a,
          "momentum"_a, "weight_decay"_a);
    m.def("adadelta_step", &adadelta_step<T>, "param"_a.noconvert(), "grad"_a, "h"_a.noconvert(), "s"_a.noconvert(),
          "lr"_a, "rho"_a, "eps"_a, "weight_decay"_a);
    m.def("adam_step", &adam_step<T>, "param"_a.noconvert(), "grad"_a, "m"_a.noconvert(), "v"_a.noconvert(), "beta1"_a,
          "beta2"_a, "eps"_a, "bias_correction2"_a, "step_size"_a, "weight_decay"_a);
    m.def("sigmoid_forward", &unary<T, pcn::sigmoid_forward<T>>, "x"_a);
    m.def("sigmoid_backward", &unary_backward<T, pcn::sigmoid_backward<T>>, "grad_output"_a, "y"_a);
    m.def("linear_forward", &linear_forward<T>, "x"_a, "w"_a, "bias"_a);
    m.def("linear_backward", &linear_backward<T>, "grad_output"_a, "x"_a, "w"_a, "need_input"_a = true,
          "grad_weight_out"_a.noconvert() = py::none(), "grad_bias_out"_a.noconvert() = py::none());
    m.def("softmax_xent_forward", &softmax_xent_forward<T>, "logits"_a, "labels"_a);
    m.def("dropout_forward", &dropout_forward<T>, "x"_a, "p"_a, "key"_a);
    m.def("dropout_backward", &dropout_backward<T>, "grad_output"_a, "mask"_a, "scale"_a);
    m.def("softmax_xent_backward", &softmax_xent_backward<T>, "p"_a, "labels"_a, "scale"_a);
}

}  // namespace

void register_relaxed(py::module_& m);  // csrc/bind_relaxed.cpp

PYBIND11_MODULE(_core, m) {
    using namespace py::literals;
    m.doc() = "pyconvnet C++ kernels (private: use pyconvnet.functional)";
    // Single-threaded BLAS from the start: our OpenMP loops own the cores.
    scipy_openblas_set_num_threads(1);
    // float64 overloads first: in pybind11's convert pass a float64 array must not be cast down.
    register_kernels<double>(m);
    register_kernels<float>(m);
    register_relaxed(m);
    // The size helpers refuse what they cannot compute exactly rather than return 0.
    auto check_sizes = [](index_t in, index_t k, index_t s, index_t p, index_t d) {
        if (!pcn::geometry_ok(in, k, s, p, d))
            fail("size arguments out of range: size=" + std::to_string(in) + ", kernel_size=" + std::to_string(k) +
                 ", stride=" + std::to_string(s) + ", padding=" + std::to_string(p) + ", dilation=" +
                 std::to_string(d) + " (kernel/stride/dilation in 1.." + std::to_string(pcn::kMaxGeometry) +
                 ", padding in 0.." + std::to_string(pcn::kMaxGeometry) + ")");
    };
    m.def("conv_out_size", [=](index_t in, index_t k, index_t s, index_t p, index_t d) {
        check_sizes(in, k, s, p, d);
        return pcn::conv_out_size(in, k, s, p, d);
    }, "size"_a, "kernel_size"_a, "stride"_a, "pad_total"_a, "dilation"_a);
    m.def("conv_transpose_out_size", [=](index_t in, index_t k, index_t s, index_t p, index_t d, index_t op) {
        check_sizes(in, k, s, p, d);
        if (op < 0 || op > pcn::kMaxGeometry) fail("output_padding: out of range, got " + std::to_string(op));
        return pcn::conv_transpose_out_size(in, k, s, p, d, op);
    }, "size"_a, "kernel_size"_a, "stride"_a, "padding"_a, "dilation"_a, "output_padding"_a);
    m.def("pool_out_size", [=](index_t in, index_t k, index_t s, index_t p, index_t d, bool ceil_mode) {
        check_sizes(in, k, s, p, d);
        return pcn::pool_out_size(in, k, s, p, d, ceil_mode);
    }, "size"_a, "kernel_size"_a, "stride"_a, "padding"_a, "dilation"_a, "ceil_mode"_a);
    m.def("set_num_threads", &pcn::set_num_threads, "n"_a);
    m.def("get_num_threads", &pcn::get_num_threads);
    // Private switches for tests and bench: compare the direct stride-1 conv with im2col + GEMM.
    m.def("_direct_conv_supported", &pcn::direct_conv_supported);
    m.def("_set_direct_conv", &pcn::set_direct_conv, "on"_a);
    m.def("_direct_conv_enabled", &pcn::direct_conv_enabled);
    m.def("_direct_conv_calls", &pcn::direct_conv_calls);
    // ... and the float sigmoid's AVX-512 copy with its SSE2 baseline (returns the previous setting).
    m.def("_sigmoid_avx512_supported", &pcn::sigmoid_avx512_supported);
    m.def("_set_sigmoid_avx512", &pcn::set_sigmoid_avx512, "on"_a);
    m.def("_set_dropout_avx512", &pcn::set_dropout_avx512, "on"_a);
    m.def("_dropout_bits", &pcn::dropout_bits, "key"_a, "i"_a);
    m.def("blas_info", []() { return std::string(scipy_openblas_get_config()); });
#ifdef _OPENMP
    m.attr("has_openmp") = true;
#else
    m.attr("has_openmp") = false;
#endif
}
