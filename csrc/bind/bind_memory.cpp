// NumPy's allocator hook (NEP 49): core/block_cache as a PyDataMem_Handler, and the
// calls pyconvnet.memory uses to install it for a block of code. NumPy keeps the
// handler in a context variable, so installing it affects this thread's (and
// context's) new arrays only; each array remembers the handler that made it.
#define NPY_NO_DEPRECATED_API NPY_1_22_API_VERSION
#define NPY_TARGET_VERSION NPY_1_22_API_VERSION
#include <pybind11/pybind11.h>

#include <numpy/arrayobject.h>

#include <cstring>

#include "core/block_cache.h"

namespace py = pybind11;

namespace {

void* h_malloc(void*, size_t n) { return pcn::cache_malloc(n); }
void* h_calloc(void*, size_t n, size_t e) { return pcn::cache_calloc(n, e); }
void* h_realloc(void*, void* p, size_t n) { return pcn::cache_realloc(p, n); }
void h_free(void*, void* p, size_t) { pcn::cache_free(p); }

PyDataMem_Handler g_handler = {"pyconvnet_block_cache", 1, {nullptr, h_malloc, h_calloc, h_realloc, h_free}};

py::object handler_capsule() {
    // NumPy looks the struct up by the capsule's name "mem_handler"
    return py::reinterpret_steal<py::object>(PyCapsule_New(&g_handler, "mem_handler", nullptr));
}

py::object set_handler(py::object capsule) {
    PyObject* old = PyDataMem_SetHandler(capsule.is_none() ? nullptr : capsule.ptr());
    if (!old) throw py::error_already_set();
    return py::reinterpret_steal<py::object>(old);
}

}  // namespace

void register_memory(py::module_& m) {
    using namespace py::literals;
    if (_import_array() < 0) throw py::error_already_set();
    m.def("_block_cache_handler", &handler_capsule, "NumPy allocator capsule of the block cache");
    m.def("_set_numpy_handler", &set_handler, "capsule"_a = py::none(),
          "Installs a NumPy allocator capsule (None: NumPy's default) in the current context; returns the previous one");
    m.def("_block_cache_open", [](size_t limit) { pcn::cache_open(limit); }, "limit_bytes"_a);
    m.def("_block_cache_close", &pcn::cache_close);
    m.def("_block_cache_trim", &pcn::cache_trim);
    m.def("_block_cache_stats", [] {
        const pcn::BlockCacheStats s = pcn::cache_stats();
        py::dict d;
        d["cached_bytes"] = s.cached_bytes;
        d["cached_blocks"] = s.cached_blocks;
        d["limit_bytes"] = s.limit_bytes;
        d["hits"] = s.hits;
        d["misses"] = s.misses;
        d["active"] = s.active;
        return d;
    });
    m.attr("_min_cached_bytes") = pcn::kMinCachedBytes;
}
