// Softmax cross-entropy with integer labels.
#include "bind/checks.h"
#include "kernels/loss.h"

namespace py = pybind11;
using pcn::index_t;

namespace {

using namespace pcn::bind;

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


template <typename T>
void register_typed(py::module_& m) {
    using namespace py::literals;
    m.def("softmax_xent_forward", &softmax_xent_forward<T>, "logits"_a, "labels"_a);
    m.def("softmax_xent_backward", &softmax_xent_backward<T>, "p"_a, "labels"_a, "scale"_a);
}

}  // namespace

void register_loss(py::module_& m) {
    // float64 first: in pybind11's convert pass a float64 array must not be cast down.
    register_typed<double>(m);
    register_typed<float>(m);
}
