#include "core/cpu.h"

#include <atomic>
#include <fstream>
#include <stdexcept>

namespace pcn {

namespace {

bool supports(Isa isa) {
#ifdef PCN_X86_64
    static const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    static const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    switch (isa) {
        case Isa::baseline: return true;
        case Isa::avx2: return avx2;
        case Isa::avx512: return avx512;
    }
    return false;
#else
    return isa == Isa::baseline;
#endif
}

Isa best() {
    for (int i = kIsaCount - 1; i > 0; --i)
        if (isa_available(Isa(i))) return Isa(i);
    return Isa::baseline;
}

std::atomic<int>& active() {
    static std::atomic<int> a{int(best())};
    return a;
}

}  // namespace

const char* isa_name(Isa isa) {
    switch (isa) {
        case Isa::baseline: return "baseline";
        case Isa::avx2: return "avx2";
        case Isa::avx512: return "avx512";
    }
    return "?";
}

bool isa_built(Isa isa) {
#ifdef PCN_X86_64
    (void)isa;
    return true;
#else
    return isa == Isa::baseline;
#endif
}

bool isa_available(Isa isa) { return isa_built(isa) && supports(isa); }

Isa active_isa() { return Isa(active().load(std::memory_order_relaxed)); }

Isa isa_from_name(const std::string& name) {
    for (int i = 0; i < kIsaCount; ++i)
        if (name == isa_name(Isa(i))) return Isa(i);
    throw std::invalid_argument("isa: expected one of avx512, avx2, baseline, got '" + name + "'");
}

Isa set_active_isa(Isa isa) {
    if (!isa_available(isa)) {
        std::string avail;
        for (int i = kIsaCount - 1; i >= 0; --i)
            if (isa_available(Isa(i))) avail += std::string(avail.empty() ? "" : ", ") + isa_name(Isa(i));
        throw std::invalid_argument(std::string("isa: this ") + (isa_built(isa) ? "CPU" : "build") + " (" +
                                    cpu_model_name() + ") cannot run the " + isa_name(isa) +
                                    " kernels; available: " + avail);
    }
    return Isa(active().exchange(int(isa)));
}

std::string cpu_model_name() {
    std::ifstream f("/proc/cpuinfo");
    std::string line;
    while (std::getline(f, line))
        if (line.rfind("model name", 0) == 0) {
            const auto c = line.find(':');
            if (c != std::string::npos) return line.substr(line.find_first_not_of(" \t", c + 1));
        }
    return "unknown CPU";
}

std::vector<std::string> cpu_features() {
    std::vector<std::string> out;
#ifdef PCN_X86_64
    if (__builtin_cpu_supports("sse4.2")) out.push_back("sse4.2");
    if (__builtin_cpu_supports("avx")) out.push_back("avx");
    if (__builtin_cpu_supports("avx2")) out.push_back("avx2");
    if (__builtin_cpu_supports("fma")) out.push_back("fma");
    if (__builtin_cpu_supports("avx512f")) out.push_back("avx512f");
    if (__builtin_cpu_supports("avx512bw")) out.push_back("avx512bw");
    if (__builtin_cpu_supports("avx512vl")) out.push_back("avx512vl");
    if (__builtin_cpu_supports("avx512dq")) out.push_back("avx512dq");
#endif
    return out;
}

}  // namespace pcn
