// The vector type of one instruction-set target, for kernel bodies written once
// over a vector width (kernels/*_body.h). Included by a target's translation unit
// INSIDE its `#pragma GCC target` region and its namespace (pcn::avx512, ...), after
// <immintrin.h> and every standard header, with one of PCN_SIMD_AVX512 /
// PCN_SIMD_AVX2 defined (neither: the portable 4-lane body, plain GCC vector
// extensions that compile to SSE2 or NEON). So it includes nothing itself.
//
//   struct V: W lanes of float in a register R;
//     zero, load / store (unaligned), loadn / storen (the first n lanes; the others
//     read as 0 and are never touched in memory), set1, fma (a*b + c), add, reduce
//     (lane sum in a fixed order), transpose (a W x W block: dst[j*ldd + i] = src[i*lds + j]).
// The tile shapes of each target (register blocking) are the kernels' business; what
// bounds them is here: kRegs vector registers, kFma (a fused multiply-add exists).

#if defined(PCN_SIMD_AVX512)

struct V {
    static constexpr int W = 16, kRegs = 32;
    static constexpr bool kFma = true;
    using R = __m512;
    static R zero() { return _mm512_setzero_ps(); }
    static R load(const float* p) { return _mm512_loadu_ps(p); }
    static void store(float* p, R v) { _mm512_storeu_ps(p, v); }
    static __mmask16 mask(int n) { return __mmask16((1u << n) - 1u); }
    static R loadn(const float* p, int n) { return _mm512_maskz_loadu_ps(mask(n), p); }
    static void storen(float* p, R v, int n) { _mm512_mask_storeu_ps(p, mask(n), v); }
    static R set1(float x) { return _mm512_set1_ps(x); }
    static R fma(R a, R b, R c) { return _mm512_fmadd_ps(a, b, c); }
    static R add(R a, R b) { return _mm512_add_ps(a, b); }
    static float reduce(R v) { return _mm512_reduce_add_ps(v); }
    // unpack 32- and 64-bit pairs, then two rounds of 128-bit lane shuffles
    static void transpose(const float* src, index_t lds, float* dst, index_t ldd) {
        __m512 r[16], t[16];
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) r[i] = _mm512_loadu_ps(src + i * lds);
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
            const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]),
                          c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
            r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
            r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
            r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
            r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
        }
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
            t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
            t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xdd);
            t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
            t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xdd);
        }
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) {
            r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
            r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
        }
#pragma GCC unroll 16
        for (int i = 0; i < 16; ++i) _mm512_storeu_ps(dst + i * ldd, r[i]);
    }
};

#elif defined(PCN_SIMD_AVX2)

struct V {
    static constexpr int W = 8, kRegs = 16;
    static constexpr bool kFma = true;
    using R = __m256;
    static R zero() { return _mm256_setzero_ps(); }
    static R load(const float* p) { return _mm256_loadu_ps(p); }
    static void store(float* p, R v) { _mm256_storeu_ps(p, v); }
    // vmaskmov never touches memory in masked-off lanes (no fault past an array's end)
    static __m256i mask(int n) { return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }
    static R loadn(const float* p, int n) { return _mm256_maskload_ps(p, mask(n)); }
    // Not vmaskmovps: its store form is slow on AMD (Zen 4, a loop of stores: 3.3 ns
    // each against 0.85 ns for a plain 128- or 256-bit store). Plain 4-, 2- and 1-lane
    // stores write the same lanes and nothing past them. (On the Keras conv1 forward,
    // which stores a 4-lane tail of every 28-wide row, no difference stood out of the
    // VM's noise: 0.36-0.37 against 0.36-0.41 ms at 1 thread.)
    static void storen(float* p, R v, int n) {
        if (n >= 8) return _mm256_storeu_ps(p, v);
        __m128 part = _mm256_castps256_ps128(v);
        if (n & 4) {
            _mm_storeu_ps(p, part);
            part = _mm256_extractf128_ps(v, 1);
            p += 4;
        }
        if (n & 2) {
            _mm_storel_pi(reinterpret_cast<__m64*>(p), part);
            part = _mm_movehl_ps(part, part);
            p += 2;
        }
        if (n & 1) _mm_store_ss(p, part);
    }
    static R set1(float x) { return _mm256_set1_ps(x); }
    static R fma(R a, R b, R c) { return _mm256_fmadd_ps(a, b, c); }
    static R add(R a, R b) { return _mm256_add_ps(a, b); }
    static float reduce(R v) {
        const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
        return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
    }
    static void transpose(const float* src, index_t lds, float* dst, index_t ldd) {
        __m256 r[8], t[8];
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * lds);
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
            t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
#pragma GCC unroll 2
        for (int i = 0; i < 2; ++i) {
            r[4 * i] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
            r[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xee);
            r[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
            r[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xee);
        }
#pragma GCC unroll 4
        for (int i = 0; i < 4; ++i) {
            t[i] = _mm256_permute2f128_ps(r[i], r[4 + i], 0x20);
            t[4 + i] = _mm256_permute2f128_ps(r[i], r[4 + i], 0x31);
        }
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) _mm256_storeu_ps(dst + i * ldd, t[i]);
    }
};

#else  // portable: 4 lanes of GCC vector extensions (SSE2 on x86-64, NEON on ARM)

struct V {
    static constexpr int W = 4, kRegs = 16;
    static constexpr bool kFma = false;
    typedef float R __attribute__((vector_size(16)));
    static R zero() { return R{0.0f, 0.0f, 0.0f, 0.0f}; }
    static R load(const float* p) {
        R v;
        __builtin_memcpy(&v, p, sizeof v);
        return v;
    }
    static void store(float* p, R v) { __builtin_memcpy(p, &v, sizeof v); }
    static R loadn(const float* p, int n) {
        R v = zero();
        for (int i = 0; i < n; ++i) v[i] = p[i];
        return v;
    }
    static void storen(float* p, R v, int n) {
        for (int i = 0; i < n; ++i) p[i] = v[i];
    }
    static R set1(float x) { return R{x, x, x, x}; }
    static R fma(R a, R b, R c) { return a * b + c; }
    static R add(R a, R b) { return a + b; }
    static float reduce(R v) { return (v[0] + v[1]) + (v[2] + v[3]); }
    static void transpose(const float* src, index_t lds, float* dst, index_t ldd) {
        for (int i = 0; i < 4; ++i)
            for (int j = 0; j < 4; ++j) dst[j * ldd + i] = src[i * lds + j];
    }
};

#endif
