// What both binding files share: the array types they accept and the error
// helpers (std::invalid_argument -> ValueError naming the argument and shape).
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>

#include "common.h"

namespace pcn::bind {

namespace py = pybind11;

template <typename T>
using arr = py::array_t<T, py::array::c_style | py::array::forcecast>;
template <typename T>
using oarr = std::optional<arr<T>>;

[[noreturn]] inline void fail(const std::string& msg) { throw std::invalid_argument(msg); }

inline std::string shape_str(const py::array& a) {
    std::ostringstream s;
    s << "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
    s << (a.ndim() == 1 ? ",)" : ")");
    return s.str();
}

}  // namespace pcn::bind
