// LSTM (batch first, torch.nn.LSTM's weight layout).
#include "bind/checks.h"
#include "kernels/lstm.h"

namespace py = pybind11;
using pcn::index_t;

namespace {

using namespace pcn::bind;

template <typename T>
py::tuple lstm_forward(arr<T> x, arr<T> w_ih, arr<T> w_hh, oarr<T> b_ih, oarr<T> b_hh) {
    const LstmDims d = lstm_dims(x, w_ih, w_hh);
    const T* bi = opt_ptr<T>(b_ih, "bias_ih", 4 * d.H);
    const T* bh = opt_ptr<T>(b_hh, "bias_hh", 4 * d.H);
    arr<T> h({d.N, d.T, d.H}), gates({d.N, d.T, 4 * d.H}), c({d.N, d.T, d.H});
    const T *xp = x.data(), *wi = w_ih.data(), *wh = w_hh.data();
    T *hp = h.mutable_data(), *gp = gates.mutable_data(), *cp = c.mutable_data();
    {
        py::gil_scoped_release nogil;
        pcn::lstm_forward(xp, wi, wh, bi, bh, hp, gp, cp, d.N, d.T, d.I, d.H);
    }
    return py::make_tuple(h, gates, c);
}

template <typename T>
py::tuple lstm_backward(arr<T> gh, arr<T> x, arr<T> w_ih, arr<T> w_hh, arr<T> h, arr<T> gates, arr<T> c,
                        bool need_x, outarr<T> gwi_out, outarr<T> gwh_out) {
    const LstmDims d = lstm_dims(x, w_ih, w_hh);
    check_shape(gh, "grad_out", {d.N, d.T, d.H});
    check_shape(h, "h", {d.N, d.T, d.H});
    check_shape(gates, "gates", {d.N, d.T, 4 * d.H});
    check_shape(c, "c", {d.N, d.T, d.H});
    py::object gxo = py::none(), gwi, gwh;
    T* gwip = out_or_new(gwi_out, "grad_weight_ih_out", {4 * d.H, d.I}, gwi);
    T* gwhp = out_or_new(gwh_out, "grad_weight_hh_out", {4 * d.H, d.H}, gwh);
    T* gxp = new_if<T>(need_x, {d.N, d.T, d.I}, gxo);
    arr<T> gb({4 * d.H});
    T* gbp = gb.mutable_data();
    const T *ghp = gh.data(), *xp = x.data(), *wi = w_ih.data(), *wh = w_hh.data(), *hp = h.data(),
            *gp = gates.data(), *cp = c.data();
    {
        py::gil_scoped_release nogil;
        pcn::lstm_backward(ghp, xp, wi, wh, hp, gp, cp, gxp, gwip, gwhp, gbp, d.N, d.T, d.I, d.H);
    }
    return py::make_tuple(gxo, gwi, gwh, gb);
}

template <typename T>
void register_typed(py::module_& m) {
    using namespace py::literals;
    m.def("lstm_forward", &lstm_forward<T>, "x"_a, "w_ih"_a, "w_hh"_a, "bias_ih"_a, "bias_hh"_a);
    m.def("lstm_backward", &lstm_backward<T>, "grad_out"_a, "x"_a, "w_ih"_a, "w_hh"_a, "h"_a, "gates"_a, "c"_a,
          "need_input"_a = true, "grad_weight_ih_out"_a.noconvert() = py::none(),
          "grad_weight_hh_out"_a.noconvert() = py::none());
}

}  // namespace

void register_lstm(py::module_& m) {
    // float64 first: in pybind11's convert pass a float64 array must not be cast down.
    register_typed<double>(m);
    register_typed<float>(m);
}
