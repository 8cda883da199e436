#include "core/switches.h"

#include "core/cpu.h"

namespace pcn {

namespace detail {
std::atomic<bool> g_switch[int(Switch::count)] = {true, true, true, true, true};
std::atomic<long long> g_calls[int(Switch::count)] = {0, 0, 0, 0, 0};
}  // namespace detail

namespace {
bool avx512() { return cpu_has_avx512(); }
bool avx512_bw_vl() { return cpu_has_avx512(true); }
bool avx2_fma() { return cpu_has_avx2_fma(); }
const SwitchInfo kSwitches[int(Switch::count)] = {
    {"direct_conv", avx512},
    {"sigmoid_avx512", avx512},
    {"dropout_avx512", avx512_bw_vl},
    {"gelu_avx512", avx512},
    {"gelu_avx2", avx2_fma},
};
}  // namespace

const SwitchInfo& switch_info(Switch s) { return kSwitches[int(s)]; }

}  // namespace pcn
