#!/usr/bin/env bash
# Developer build: compile _core into build/dev and drop it (with its OpenBLAS)
# into the source tree, so `python -m pytest` from the repo root uses it.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR="${BUILD_DIR:-build/dev}"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -Dpybind11_DIR="$(python -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
  -DPython_EXECUTABLE="$(command -v python)" "$@" >/dev/null
cmake --build "$BUILD_DIR"
# copy then rename: overwriting a loaded .so in place crashes running processes
install_lib() { cp "$1" "pyconvnet/.$(basename "$1").tmp" && mv -f "pyconvnet/.$(basename "$1").tmp" "pyconvnet/$(basename "$1")"; }
install_lib "$BUILD_DIR"/_core*.so
install_lib "$(python -c 'import scipy_openblas32, os; print(os.path.join(scipy_openblas32.get_lib_dir(), "libscipy_openblas.so"))')"
