// Private switches for tests and the bench: each names a special path that can be
// turned off to compare it with the general one (the direct convolution against
// im2col + GEMM). Which instruction-set copy runs is not a switch but the target
// in use (core/cpu.h). One registry, one
// signature: set_switch returns the previous setting; counters record how often a
// special path ran, so a test can tell it was taken.
#pragma once
#include <atomic>

namespace pcn {

// avx512_halves: on a CPU that runs AVX-512 on 256-bit halves (core/cpu.h), the
// AVX-512 target's forward convolutions whose channel tiles are one vector wide run
// as the AVX2 copy (off: the AVX-512 copy, so tests cover it on such a CPU too).
enum class Switch : int { direct_conv, winograd, avx512_halves, count };

struct SwitchInfo {
    const char* name;
    bool (*supported)();  // whether this CPU (and build) can run the path at all
};
const SwitchInfo& switch_info(Switch s);

namespace detail {
extern std::atomic<bool> g_switch[int(Switch::count)];
extern std::atomic<long long> g_calls[int(Switch::count)];
}  // namespace detail

// On and supported: the path may run.
inline bool switch_on(Switch s) {
    return detail::g_switch[int(s)].load(std::memory_order_relaxed) && switch_info(s).supported();
}
inline bool set_switch(Switch s, bool on) { return detail::g_switch[int(s)].exchange(on); }
inline bool switch_setting(Switch s) { return detail::g_switch[int(s)].load(); }
inline void count_call(Switch s) { detail::g_calls[int(s)].fetch_add(1, std::memory_order_relaxed); }
inline long long calls(Switch s) { return detail::g_calls[int(s)].load(); }

}  // namespace pcn
