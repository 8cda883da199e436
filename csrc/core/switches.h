// Private switches for tests and the bench: each names a special path that can be
// turned off to compare it with the general one (the direct convolution against
// im2col + GEMM, an ISA copy against the portable loop). One registry, one
// signature: set_switch returns the previous setting; counters record how often a
// special path ran, so a test can tell it was taken.
#pragma once
#include <atomic>

namespace pcn {

enum class Switch : int { direct_conv, sigmoid_avx512, dropout_avx512, gelu_avx512, gelu_avx2, count };

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
