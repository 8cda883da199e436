#include "core/cpu.h"

#include <atomic>
#include <cstring>
#include <fstream>
#include <stdexcept>

#ifdef PCN_X86_64
#include <cpuid.h>
#endif

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

struct Cpuid {
    std::string vendor;  // "AMD", "Intel" or the raw vendor string
    unsigned family = 0, model = 0;
};

const Cpuid& cpuid() {
    static const Cpuid id = [] {
        Cpuid c;
#ifdef PCN_X86_64
        unsigned a = 0, b = 0, cx = 0, d = 0;
        if (__get_cpuid(0, &a, &b, &cx, &d)) {
            char v[13] = {};
            std::memcpy(v, &b, 4);
            std::memcpy(v + 4, &d, 4);
            std::memcpy(v + 8, &cx, 4);
            c.vendor = v;
            if (c.vendor == "AuthenticAMD") c.vendor = "AMD";
            if (c.vendor == "GenuineIntel") c.vendor = "Intel";
        }
        if (__get_cpuid(1, &a, &b, &cx, &d)) {
            // the displayed family and model (Intel SDM vol. 2A, CPUID leaf 1; AMD APM vol. 3, E.3.2)
            const unsigned base_family = (a >> 8) & 0xF, base_model = (a >> 4) & 0xF;
            c.family = base_family == 0xF ? base_family + ((a >> 20) & 0xFF) : base_family;
            c.model = (base_family == 0x6 || base_family == 0xF) ? (((a >> 16) & 0xF) << 4) | base_model : base_model;
        }
#endif
        return c;
    }();
    return id;
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

std::string cpu_microarch() {
    const Cpuid& c = cpuid();
    if (c.vendor.empty()) return "unknown";
    std::string s = c.vendor + " family " + std::to_string(c.family) + " model " + std::to_string(c.model);
    if (c.vendor == "AMD") {
        if (c.family == 0x17) s += c.model >= 0x30 ? " (Zen 2)" : " (Zen / Zen+)";
        if (c.family == 0x19) s += (c.model >= 0x10 && c.model <= 0x1F) || (c.model >= 0x60 && c.model <= 0xAF)
                                       ? " (Zen 4)"
                                       : " (Zen 3)";
        if (c.family == 0x1A) s += " (Zen 5)";
    }
    return s;
}

bool avx512_half_width() {
    // Zen 4 is the AVX-512 core of family 19h (Zen 3, the same family, has no AVX-512).
    const Cpuid& c = cpuid();
    return supports(Isa::avx512) && c.vendor == "AMD" && c.family == 0x19;
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
