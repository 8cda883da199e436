// The direct stride-1 convolution's entry points: pick the copy of the body
// (conv_direct_body.h) compiled for the target in use (core/cpu.h), count the calls.
#include "kernels/conv_direct.h"

#include "core/cpu.h"
#include "core/switches.h"
#include "kernels/conv_isa.h"

namespace pcn {

namespace {
template <typename Fb, typename F2, typename F5>
bool dispatch(Fb&& base, F2&& avx2, F5&& avx512) {
    if (!switch_on(Switch::direct_conv)) return false;
    bool done = false;
    switch (active_isa()) {
        case Isa::avx512: done = avx512(); break;
        case Isa::avx2: done = avx2(); break;
        case Isa::baseline: done = base(); break;
    }
    if (done) count_call(Switch::direct_conv);
    return done;
}
}  // namespace

// The forward's channel tiles (conv_direct_body.h: ChanKernel) hold one vector of
// channels when 16 or fewer: one broadcast per FMA at 16 lanes, two at 8. On a
// half-width AVX-512 core (Zen 4) the AVX2 copy then does the same FMAs with half the
// broadcasts: LeNet conv3 (16 channels, 10x10) 0.32 against 0.45 ms on 1 thread. On
// full-width cores (Zen 5, Xeon) the AVX-512 copy stays faster (0.28 against 0.37 ms).
// The test mirrors the AVX-512 copy's prefer_channels: 16 channels a group and output
// rows that fill at most 80% of their 16-lane vectors.
bool one_vector_channels(const ConvArgs& a) {
    const index_t ow = a.g.OW;
    return a.O / a.groups == 16 && ow > 0 && 5 * ow <= 4 * 16 * ((ow + 15) / 16);
}

bool conv2d_forward_direct(const float* x, const float* w, const float* bias, float* y, const ConvArgs& a) {
    return dispatch([&] { return baseline::forward(x, w, bias, y, a); }, [&] { return avx2::forward(x, w, bias, y, a); },
                    [&] {
                        if (one_vector_channels(a) && switch_on(Switch::avx512_halves)) {
                            count_call(Switch::avx512_halves);
                            return avx2::forward(x, w, bias, y, a);
                        }
                        return avx512::forward(x, w, bias, y, a);
                    });
}

bool conv2d_backward_data_direct(const float* gy, const float* w, float* gx, const ConvArgs& a) {
    return dispatch([&] { return baseline::backward_data(gy, w, gx, a); },
                    [&] { return avx2::backward_data(gy, w, gx, a); },
                    [&] { return avx512::backward_data(gy, w, gx, a); });
}

bool conv2d_backward_weight_direct(const float* gy, const float* x, float* gw, const ConvArgs& a) {
    return dispatch([&] { return baseline::backward_weight(gy, x, gw, a); },
                    [&] { return avx2::backward_weight(gy, x, gw, a); },
                    [&] { return avx512::backward_weight(gy, x, gw, a); });
}

}  // namespace pcn
