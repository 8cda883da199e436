// CPU features and the instruction-set target of the hand-vectorised kernels.
//
// The one guard for code that needs x86-64 intrinsics or GCC's target regions is
// PCN_X86_64; elsewhere (ARM, other compilers) only the portable body is built, and
// its GCC vector-extension loops compile to NEON (or SSE2) on their own.
//
// A kernel with ISA copies is one source body compiled once per target, each
// copy inside a `#pragma GCC target` region opened after every standard header
// (see kernels/conv_direct_*.cpp and docs/architecture.md). The target in use is
// chosen once per process -- the best this CPU runs, or PYCONVNET_ISA (read by the
// Python package at import) -- and can be switched for tests and the bench.
#pragma once

#include <string>
#include <vector>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PCN_X86_64 1
#endif

namespace pcn {

enum class Isa : int { baseline = 0, avx2 = 1, avx512 = 2 };
constexpr int kIsaCount = 3;

const char* isa_name(Isa isa);
// Built into this library (baseline always; the x86 copies on x86-64 GCC/Clang).
bool isa_built(Isa isa);
// Built and runnable on this CPU: avx2 = AVX2 + FMA; avx512 = AVX-512 F/BW/VL/DQ + FMA.
bool isa_available(Isa isa);
// The target the kernels use now (default: the best available).
Isa active_isa();
// Switches the target; throws std::invalid_argument naming the target and what is
// available when this CPU or build cannot run it. Returns the previous target.
Isa set_active_isa(Isa isa);
// Parses "avx512" / "avx2" / "baseline"; throws std::invalid_argument otherwise.
Isa isa_from_name(const std::string& name);

// What the bench and pyconvnet.cpu_info() report: the CPU's model name (from
// /proc/cpuinfo where there is one) and the features the targets test.
std::string cpu_model_name();
std::vector<std::string> cpu_features();
// The core's family by its vendor's CPUID numbering, e.g. "AMD family 25 model 17
// (Zen 4)"; the name in brackets only for the families the kernels tune for.
std::string cpu_microarch();
// Whether this CPU runs AVX-512 on 256-bit halves (AMD Zen 4: a zmm FMA takes both
// FMA pipes, so it does no more work per cycle than two ymm FMAs while costing the
// same load or broadcast); tiles that have one broadcast per FMA at 16 lanes then run
// faster as the AVX2 copy, with one broadcast per two FMAs.
bool avx512_half_width();

}  // namespace pcn
