#include "core/switches.h"

#include "core/cpu.h"

namespace pcn {

namespace detail {
std::atomic<bool> g_switch[int(Switch::count)] = {true, true, true};
std::atomic<long long> g_calls[int(Switch::count)] = {0, 0, 0};
}  // namespace detail

namespace {
bool always() { return true; }
bool half_width() { return avx512_half_width() && isa_available(Isa::avx2); }
const SwitchInfo kSwitches[int(Switch::count)] = {
    {"direct_conv", always},  // every target has a copy
    {"winograd", always},
    {"avx512_halves", half_width},
};
}  // namespace

const SwitchInfo& switch_info(Switch s) { return kSwitches[int(s)]; }

}  // namespace pcn
