// What is not a kernel: the output-size formulas (Python's only copy of them),
// the thread knob, the BLAS in use, and the private switches for tests and the bench.
#include <string>

#include "bind/checks.h"
#include "core/blas.h"
#include "core/cpu.h"
#include "core/parallel.h"
#include "core/switches.h"
#include "kernels/dropout.h"

namespace py = pybind11;
using pcn::index_t;

namespace {

using namespace pcn::bind;

// The size helpers refuse what they cannot compute exactly rather than return 0.
void check_sizes(index_t in, index_t k, index_t s, index_t p, index_t d) {
    if (!pcn::geometry_ok(in, k, s, p, d))
        fail("size arguments out of range: size=" + std::to_string(in) + ", kernel_size=" + std::to_string(k) +
             ", stride=" + std::to_string(s) + ", padding=" + std::to_string(p) + ", dilation=" + std::to_string(d) +
             " (kernel/stride/dilation in 1.." + std::to_string(pcn::kMaxGeometry) + ", padding in 0.." +
             std::to_string(pcn::kMaxGeometry) + ")");
}

pcn::Switch switch_named(const std::string& name) {
    for (int i = 0; i < int(pcn::Switch::count); ++i)
        if (name == pcn::switch_info(pcn::Switch(i)).name) return pcn::Switch(i);
    std::string known;
    for (int i = 0; i < int(pcn::Switch::count); ++i) known += std::string(i ? ", " : "") + pcn::switch_info(pcn::Switch(i)).name;
    fail("name: unknown switch '" + name + "'; known: " + known);
}

}  // namespace

void register_core(py::module_& m) {
    using namespace py::literals;
    m.def("conv_out_size", [](index_t in, index_t k, index_t s, index_t p, index_t d) {
        check_sizes(in, k, s, p, d);
        return pcn::conv_out_size(in, k, s, p, d);
    }, "size"_a, "kernel_size"_a, "stride"_a, "pad_total"_a, "dilation"_a);
    m.def("conv_transpose_out_size", [](index_t in, index_t k, index_t s, index_t p, index_t d, index_t op) {
        check_sizes(in, k, s, p, d);
        if (op < 0 || op > pcn::kMaxGeometry) fail("output_padding: out of range, got " + std::to_string(op));
        return pcn::conv_transpose_out_size(in, k, s, p, d, op);
    }, "size"_a, "kernel_size"_a, "stride"_a, "padding"_a, "dilation"_a, "output_padding"_a);
    m.def("pool_out_size", [](index_t in, index_t k, index_t s, index_t p, index_t d, bool ceil_mode) {
        check_sizes(in, k, s, p, d);
        return pcn::pool_out_size(in, k, s, p, d, ceil_mode);
    }, "size"_a, "kernel_size"_a, "stride"_a, "padding"_a, "dilation"_a, "ceil_mode"_a);
    m.def("set_num_threads", &pcn::set_num_threads, "n"_a);
    m.def("get_num_threads", &pcn::get_num_threads);
    m.def("blas_info", []() { return std::string(pcn::blas_config()); });
#ifdef _OPENMP
    m.attr("has_openmp") = true;
#else
    m.attr("has_openmp") = false;
#endif

    // Private switches (tests, bench): one signature for all of them.
    m.def("_set_switch", [](const std::string& name, bool on) { return pcn::set_switch(switch_named(name), on); },
          "name"_a, "on"_a, "Turns a special path on or off; returns the previous setting.");
    m.def("_switches", []() {
        py::dict d;
        for (int i = 0; i < int(pcn::Switch::count); ++i) {
            const auto s = pcn::Switch(i);
            d[pcn::switch_info(s).name] = py::make_tuple(pcn::switch_setting(s), pcn::switch_info(s).supported());
        }
        return d;
    }, "name -> (setting, supported by this CPU) of every switch.");
    m.def("_calls", [](const std::string& name) { return pcn::calls(switch_named(name)); }, "name"_a,
          "How many times the special path `name` has run in this process.");
    m.def("_dropout_bits", &pcn::dropout_bits, "key"_a, "i"_a);

    // Instruction-set targets of the hand-vectorised kernels (core/cpu.h).
    m.def("_isa", []() { return std::string(pcn::isa_name(pcn::active_isa())); },
          "The target the kernels use now: 'avx512', 'avx2' or 'baseline'.");
    m.def("_set_isa", [](const std::string& name) {
        return std::string(pcn::isa_name(pcn::set_active_isa(pcn::isa_from_name(name))));
    }, "name"_a, "Switches the kernels' target (ValueError when this CPU or build cannot run it); returns the "
                 "previous one.");
    m.def("_isas", []() {
        py::list built, avail;
        for (int i = pcn::kIsaCount - 1; i >= 0; --i) {
            const auto isa = pcn::Isa(i);
            if (pcn::isa_built(isa)) built.append(pcn::isa_name(isa));
            if (pcn::isa_available(isa)) avail.append(pcn::isa_name(isa));
        }
        return py::make_tuple(built, avail);
    }, "(built, available): the targets in this build, and those this CPU runs; best first.");
    m.def("_cpu", []() { return py::make_tuple(pcn::cpu_model_name(), pcn::cpu_features()); },
          "(model name, features the targets test).");
    m.def("_microarch", []() { return py::make_tuple(pcn::cpu_microarch(), pcn::avx512_half_width()); },
          "(vendor, family and model by CPUID, whether AVX-512 runs on 256-bit halves).");
}
