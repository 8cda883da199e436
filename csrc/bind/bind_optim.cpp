// Fused optimizer steps, in place on the parameters and their state.
#include "bind/checks.h"
#include "kernels/update.h"

namespace py = pybind11;
using pcn::index_t;

namespace {

using namespace pcn::bind;

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
void register_typed(py::module_& m) {
    using namespace py::literals;
    m.def("sgd_step", &sgd_step<T>, "param"_a.noconvert(), "grad"_a, "lr"_a, "weight_decay"_a);
    m.def("momentum_step", &momentum_step<T>, "param"_a.noconvert(), "grad"_a, "velocity"_a.noconvert(), "lr"_a,
          "momentum"_a, "weight_decay"_a);
    m.def("adadelta_step", &adadelta_step<T>, "param"_a.noconvert(), "grad"_a, "h"_a.noconvert(), "s"_a.noconvert(),
          "lr"_a, "rho"_a, "eps"_a, "weight_decay"_a);
    m.def("adam_step", &adam_step<T>, "param"_a.noconvert(), "grad"_a, "m"_a.noconvert(), "v"_a.noconvert(), "beta1"_a,
          "beta2"_a, "eps"_a, "bias_correction2"_a, "step_size"_a, "weight_decay"_a);
}

}  // namespace

void register_optim(py::module_& m) {
    // float64 first: in pybind11's convert pass a float64 array must not be cast down.
    register_typed<double>(m);
    register_typed<float>(m);
}
