#include "core/switches.h"


namespace pcn {

namespace detail {
std::atomic<bool> g_switch[int(Switch::count)] = {true, true};
std::atomic<long long> g_calls[int(Switch::count)] = {0, 0};
}  // namespace detail

namespace {
bool always() { return true; }
const SwitchInfo kSwitches[int(Switch::count)] = {
    {"direct_conv", always},  // every target has a copy
    {"winograd", always},
};
}  // namespace

const SwitchInfo& switch_info(Switch s) { return kSwitches[int(s)]; }

}  // namespace pcn
