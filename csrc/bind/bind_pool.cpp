// Pooling: max and average, forward and backward.
#include "bind/checks.h"
#include "kernels/pool.h"

namespace py = pybind11;
using pcn::index_t;

namespace {

using namespace pcn::bind;

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
    check_ndim(gy, "grad_out", 4);
    check_nonneg(in_shape.data(), 4, "input_shape");
    if (gy.shape(0) != in_shape[0] || gy.shape(1) != in_shape[1])
        fail("grad_out: batch/channel dims " + shape_str(gy) + " do not match input_shape");
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
    check_shape(gy, "grad_out", {in_shape[0], in_shape[1], a.OH, a.OW});
    arr<T> gx({in_shape[0], in_shape[1], in_shape[2], in_shape[3]});
    const T* gp = gy.data();
    T* xp = gx.mutable_data();
    {
        py::gil_scoped_release nogil;
        pcn::avg_pool2d_backward(gp, xp, a, cip);
    }
    return gx;
}


template <typename T>
void register_typed(py::module_& m) {
    using namespace py::literals;
    m.def("max_pool2d_forward", &max_pool2d_forward<T>, "x"_a, "kernel_size"_a, "stride"_a, "padding"_a, "dilation"_a,
          "ceil_mode"_a);
    m.def("max_pool2d_backward", &max_pool2d_backward<T>, "grad_out"_a, "indices"_a, "input_shape"_a);
    m.def("avg_pool2d_forward", &avg_pool2d_forward<T>, "x"_a, "kernel_size"_a, "stride"_a, "padding"_a,
          "ceil_mode"_a, "count_include_pad"_a);
    m.def("avg_pool2d_backward", &avg_pool2d_backward<T>, "grad_out"_a, "input_shape"_a, "kernel_size"_a,
          "stride"_a, "padding"_a, "ceil_mode"_a, "count_include_pad"_a);
}

}  // namespace

void register_pool(py::module_& m) {
    // float64 first: in pybind11's convert pass a float64 array must not be cast down.
    register_typed<double>(m);
    register_typed<float>(m);
}
