// The extension module: one register_* per kernel family (bind_<family>.cpp),
// every shape check in checks.h. Each binding checks its arguments, allocates
// the outputs, releases the GIL and calls the plain C++ kernel.
#include <pybind11/pybind11.h>

#include "cblas.h"

namespace py = pybind11;

void register_core(py::module_& m);
void register_conv(py::module_& m);
void register_pool(py::module_& m);
void register_norm(py::module_& m);
void register_linear(py::module_& m);
void register_activation(py::module_& m);
void register_loss(py::module_& m);
void register_optim(py::module_& m);
void register_relaxed(py::module_& m);
void register_memory(py::module_& m);
void register_lstm(py::module_& m);

PYBIND11_MODULE(_core, m) {
    m.doc() = "pyconvnet C++ kernels (private: use pyconvnet.functional)";
    // Single-threaded BLAS from the start: our OpenMP loops own the cores.
    scipy_openblas_set_num_threads(1);
    register_core(m);
    register_conv(m);
    register_pool(m);
    register_norm(m);
    register_linear(m);
    register_activation(m);
    register_loss(m);
    register_optim(m);
    register_relaxed(m);
    register_memory(m);
    register_lstm(m);
}
