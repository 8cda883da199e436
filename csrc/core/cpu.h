// CPU features. The one guard for code that needs x86-64 intrinsics or GCC's
// target attributes is PCN_X86_64; elsewhere (ARM, other compilers) only the
// portable loops are built.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define PCN_X86_64 1
#endif

namespace pcn {

// Whether this CPU runs the AVX-512 copies: AVX-512F and FMA (plus BW and VL when
// `bw_vl`, for byte masks). Checked once per process; false off x86-64 GCC/Clang.
inline bool cpu_has_avx512(bool bw_vl = false) {
#ifdef PCN_X86_64
    static const bool base = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
    static const bool bwvl = base && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    return bw_vl ? bwvl : base;
#else
    (void)bw_vl;
    return false;
#endif
}

// Whether this CPU runs AVX2 + FMA copies (x86-64 since Haswell / Zen). Checked once per process.
inline bool cpu_has_avx2_fma() {
#ifdef PCN_X86_64
    static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return ok;
#else
    return false;
#endif
}

}  // namespace pcn
