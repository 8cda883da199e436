// The direct stride-1 convolution, written once over a vector width. Compiled once
// per target by conv_direct_<isa>.cpp, inside that target's namespace and
// `#pragma GCC target` region, after core/simd.h has defined V (its lanes W, loads,
// stores, FMA) and kTiles / kWg* (its register blocking). Includes nothing itself.
//
//   out[o, r, s] = sum_k wk[o, k] * z[koff[k] + r*Wz + s]      k = (c, i, j)
//
// z is one sample's input copied into a zero-padded (Cin, Hz, Wz) buffer, so
// every tap of every output pixel is in range and the inner loop has no bounds
// tests. The forward pass is this with z = padded x. The data gradient of a
// stride-1 conv is the same thing with z = padded grad_output and the kernel
// flipped and transposed, so one micro-kernel serves both.
//
// The micro-kernel keeps an MR x NV tile of accumulators in registers: MR output
// channels by NV vectors of W consecutive pixels of an output row (the last one of
// a row partial). Per k it loads NV input vectors, broadcasts MR weights and issues
// MR*NV FMAs; with about 3/4 of the registers as accumulators that is FMA-bound
// (FMA latency 4-5 cycles at 2 per cycle needs >= 10 independent sums). im2col +
// GEMM instead writes and re-reads a K x L column matrix per sample and pays BLAS's
// packing on GEMMs too small to amortise it.
//
// Determinism: forward and data gradient write disjoint outputs (any schedule gives
// the same bits); the weight gradients sum over samples in fixed chunks of samples
// added in chunk order (kernels/conv.h: deterministic_chunks), so their bits do not
// depend on the thread count either.

struct Slot {         // W consecutive output pixels of one row (fewer at its end)
    index_t in, out;  // first pixel's offset in z (at tap 0) and in the output plane
    int n;            // pixels in the slot (1..W); the loads past them read padding or the tail
};

template <int MR, int NV>
void tile(const float* z, const Slot* sl, const float* wpk, const index_t* koff, index_t K, float* out,
          index_t plane, int mr, const float* bias, bool first) {
    typename V::R acc[MR][NV];
    const float* zv[NV];
    int nv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
        zv[v] = z + sl[v].in;
        nv[v] = sl[v].n;
    }
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m)
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v)  // a later block of taps adds to what the earlier ones stored
            acc[m][v] = first || m >= mr ? V::zero() : V::loadn(out + m * plane + sl[v].out, nv[v]);
    // One flat k loop over an offset table: with nested (c, i, j) loops GCC
    // kept the accumulators in memory (2x slower).
    for (index_t k = 0; k < K; ++k) {
        const index_t o = koff[k];
        typename V::R xv[NV];
        // Full-width loads (masked ones cost ~15%): lanes past a row's end read
        // the next row or z's tail and are never stored.
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) xv[v] = V::load(zv[v] + o);
#pragma GCC unroll 16
        for (int m = 0; m < MR; ++m) {
            const typename V::R wb = V::set1(wpk[k * MR + m]);
#pragma GCC unroll 8
            for (int v = 0; v < NV; ++v) acc[m][v] = V::fma(wb, xv[v], acc[m][v]);
        }
    }
#pragma GCC unroll 16
    for (int m = 0; m < MR; ++m) {
        if (m >= mr) break;
        if (bias) {
            const typename V::R b = V::set1(bias[m]);
#pragma GCC unroll 8
            for (int v = 0; v < NV; ++v) acc[m][v] = V::add(acc[m][v], b);
        }
#pragma GCC unroll 8
        for (int v = 0; v < NV; ++v) {
            if (nv[v] == V::W)
                V::store(out + m * plane + sl[v].out, acc[m][v]);
            else
                V::storen(out + m * plane + sl[v].out, acc[m][v], nv[v]);
        }
    }
}

// Tile shapes of this target (kTiles: {MR, NV, rate}) cover O with the fewest idle
// rows at the best measured rate; blocks of the three kinds in that order.
struct Block {
    index_t o0, woff;
    int mr, kind;  // MR = kTiles[kind].mr
};

// Tiles t0.. of a block row: NV-wide tiles, then one narrower for the rest.
template <int MR, int NV>
void tiles(const float* z, const Slot* sl, index_t t, index_t s1, const float* w, const index_t* ko, index_t kn,
           float* o, index_t P, int mr, const float* bb, bool first) {
    for (; t + NV <= s1; t += NV) tile<MR, NV>(z, sl + t, w, ko, kn, o, P, mr, bb, first);
    if constexpr (NV > 1) {
        const index_t left = s1 - t;
        if (left == 1) tile<MR, 1>(z, sl + t, w, ko, kn, o, P, mr, bb, first);
        if constexpr (NV > 2)
            if (left == 2) tile<MR, 2>(z, sl + t, w, ko, kn, o, P, mr, bb, first);
        if constexpr (NV > 3)
            if (left == 3) tile<MR, 3>(z, sl + t, w, ko, kn, o, P, mr, bb, first);
    }
}

struct Kernel {  // what every sample of one call shares
    index_t Cin = 0, O = 0, K = 0, Hz = 0, Wz = 0, OR = 0, OS = 0;
    std::vector<index_t> koff;
    std::vector<Slot> slots;
    std::vector<Block> blocks;
    std::vector<float> wpk;  // per block: (K, MR), rows past mr zero

    // with_weights=false: geometry only (the weight gradients pack no weights)
    Kernel(index_t cin, index_t o, index_t kh, index_t kw, index_t dh, index_t dw, index_t orows, index_t ocols,
           bool with_weights = true)
        : Cin(cin), O(o), K(cin * kh * kw), Hz(orows + (kh - 1) * dh), Wz(ocols + (kw - 1) * dw), OR(orows), OS(ocols) {
        koff.reserve(std::size_t(K));
        for (index_t c = 0; c < Cin; ++c)
            for (index_t i = 0; i < kh; ++i)
                for (index_t j = 0; j < kw; ++j) koff.push_back(c * Hz * Wz + i * dh * Wz + j * dw);
        for (index_t r = 0; r < OR; ++r)
            for (index_t s = 0; s < OS; s += V::W) slots.push_back({r * Wz + s, r * OS + s, int(std::min<index_t>(V::W, OS - s))});
        // Cover O with a, b, c blocks of the three tile heights (the last one may be
        // partial) at the least cost: rows / rate per block.
        const int m0 = kTiles[0].mr, m1 = kTiles[1].mr, m2 = kTiles[2].mr;
        index_t best[3] = {0, 0, (O + m2 - 1) / m2};
        double best_cost = double(m2) * double(best[2]) / kTiles[2].rate;
        for (index_t na = 0; na <= (O + m0 - 1) / m0; ++na)
            for (index_t nb = 0; nb <= (O + m1 - 1) / m1; ++nb) {
                const index_t left = std::max<index_t>(0, O - m0 * na - m1 * nb);
                const index_t nc = (left + m2 - 1) / m2;
                if (nc > 2) continue;  // (idle whole blocks only add cost, so they never win)
                const double cost = double(m0 * na) / kTiles[0].rate + double(m1 * nb) / kTiles[1].rate +
                                    double(m2 * nc) / kTiles[2].rate;
                if (cost < best_cost - 1e-12) {
                    best_cost = cost;
                    best[0] = na, best[1] = nb, best[2] = nc;
                }
            }
        index_t woff = 0;
        for (int kind = 0; kind < 3; ++kind)
            for (index_t i = 0; i < best[kind]; ++i) {
                const index_t o0 = blocks.empty() ? 0 : blocks.back().o0 + blocks.back().mr;
                if (o0 >= O) break;
                const int mr = int(std::min<index_t>(kTiles[kind].mr, O - o0));
                blocks.push_back({o0, woff, mr, kind});
                woff += K * kTiles[kind].mr;
            }
        if (with_weights) wpk.assign(std::size_t(woff), 0.0f);
    }
    index_t zsize() const { return Cin * Hz * Wz + V::W; }  // + a tail for the last row's full-width loads
    index_t plane() const { return OR * OS; }

    template <typename F>  // wk(o, k): the weight of input tap k for output channel o
    void pack(F&& wk) {
        for (const Block& b : blocks) {
            const int MR = kTiles[b.kind].mr;
            float* d = wpk.data() + b.woff;
            for (index_t k = 0; k < K; ++k)
                for (int m = 0; m < b.mr; ++m) d[k * MR + m] = wk(b.o0 + m, k);
        }
    }

    // Blocks [b0, b1) over slots [s0, s1) of one sample.
    // Taps in blocks of kKC so a block's weights (MR x kKC floats) and the image
    // rows it touches stay in L1 across a whole sweep of tiles.
    static constexpr index_t kKC = 288;
    void compute(const float* z, float* out, const float* bias, std::size_t b0, std::size_t b1, index_t s0,
                 index_t s1) const {
        const index_t P = plane();
        const index_t nkc = K <= kKC + kKC / 3 ? 1 : (K + kKC - 1) / kKC, kc = (K + nkc - 1) / nkc;
        for (std::size_t bi = b0; bi < b1; ++bi) {
            const Block& b = blocks[bi];
            float* o = out + b.o0 * P;
            const Slot* sl = slots.data();
            for (index_t k0 = 0; k0 < K; k0 += kc) {
                const index_t kn = std::min(kc, K - k0);
                const bool first = k0 == 0;
                const float* bb = bias && k0 + kn == K ? bias + b.o0 : nullptr;  // added once, last
                const float* w = wpk.data() + b.woff + k0 * kTiles[b.kind].mr;
                const index_t* ko = koff.data() + k0;
                if (b.kind == 0)
                    tiles<kTiles[0].mr, kTiles[0].nv>(z, sl, s0, s1, w, ko, kn, o, P, b.mr, bb, first);
                else if (b.kind == 1)
                    tiles<kTiles[1].mr, kTiles[1].nv>(z, sl, s0, s1, w, ko, kn, o, P, b.mr, bb, first);
                else
                    tiles<kTiles[2].mr, kTiles[2].nv>(z, sl, s0, s1, w, ko, kn, o, P, b.mr, bb, first);
            }
        }
    }

    // z = src (Cin planes of Hs x Ws) placed with its top-left corner at
    // (top, left), clipped to z, zeros elsewhere. Clipping is exact: rows or
    // columns that fall outside z reach no output.
    void fill(const float* src, index_t Hs, index_t Ws, index_t top, index_t left, float* z) const {
        std::memset(z, 0, sizeof(float) * std::size_t(zsize()));
        const index_t w0 = std::max<index_t>(0, -left), w1 = std::min<index_t>(Ws, Wz - left);
        if (w1 <= w0) return;
        for (index_t c = 0; c < Cin; ++c)
            for (index_t h = std::max<index_t>(0, -top); h < Hs && h + top < Hz; ++h)
                std::memcpy(z + (c * Hz + h + top) * Wz + left + w0, src + (c * Hs + h) * Ws + w0,
                            sizeof(float) * std::size_t(w1 - w0));
    }

    // All N samples: sample n reads src + n*src_ns and writes out + n*out_ns.
    void run(const float* src, index_t src_ns, index_t Hs, index_t Ws, index_t top, index_t left, float* out,
             index_t out_ns, const float* bias, index_t N) const {
        const int nt = max_threads();
        const index_t ns = index_t(slots.size());
        const std::size_t nb = blocks.size();
        // as conv.cpp: below ~0.25 M multiply-adds threads cost more than they save
        if (nt < 2 || in_parallel() || double(N) * O * plane() * K < 262144.0) {
            float* z = scratch<float>(0, std::size_t(zsize()));
            for (index_t n = 0; n < N; ++n) {
                fill(src + n * src_ns, Hs, Ws, top, left, z);
                compute(z, out + n * out_ns, bias, 0, nb, 0, ns);
            }
            return;
        }
        if (N % nt == 0 || N >= 4 * nt) {  // whole samples per thread
            // dynamic: on a shared machine a preempted thread then delays one sample, not half the batch
#pragma omp parallel for schedule(dynamic, 1)
            for (index_t n = 0; n < N; ++n) {
                float* z = scratch<float>(0, std::size_t(zsize()));
                fill(src + n * src_ns, Hs, Ws, top, left, z);
                compute(z, out + n * out_ns, bias, 0, nb, 0, ns);
            }
            return;
        }
        // Few samples: split each one's channel blocks and rows over the threads
        // (chunks of slots a multiple of every tile width).
        const index_t nch = std::max<index_t>(1, std::min<index_t>((2 * nt + index_t(nb) - 1) / index_t(nb), ns / 6));
        const index_t cs = ((ns + nch - 1) / nch + 11) / 12 * 12;
        const index_t items = index_t(nb) * nch;
        float* z = scratch<float>(0, std::size_t(zsize()));
        for (index_t n = 0; n < N; ++n) {
            fill(src + n * src_ns, Hs, Ws, top, left, z);
#pragma omp parallel for schedule(dynamic, 1)
            for (index_t it = 0; it < items; ++it) {
                const std::size_t b = std::size_t(it / nch);
                const index_t s0 = (it % nch) * cs, s1 = std::min(ns, s0 + cs);
                if (s0 < s1) compute(z, out + n * out_ns, bias, b, b + 1, s0, s1);
            }
        }
    }
};

// ------------------------------------------------------------ channel-vector forward
// The same sum vectorised along output channels instead of pixels: a tile keeps NP
// output pixels x OV vectors of W channels, and per tap loads OV weight vectors
// (weights packed (K, Op), Op = O padded to W) and broadcasts NP input values. No
// lane is idle on rows that fit vectors badly (LeNet's 10-wide maps fill 10 of 16
// lanes of the row tiles) as long as O is a multiple of W. The output is computed
// channel-last for one sample, then transposed into its NCHW planes.
template <int NP, int OV>
void cv_tile(const float* z, const index_t* zpos, int np, const float* wT, index_t ldw, const index_t* koff,
             index_t K, float* ot, index_t ldo, bool first) {
    // out[p][v*W ..] (+)= sum_k z[zpos[p] + koff[k]] * wT[k*ldw + v*W ..]: NP broadcasts, OV vector
    // loads and NP*OV FMAs per k (also Winograd's batched products: p = tiles, k = channels)
    typename V::R acc[NP][OV];
    const float* zp[NP];
#pragma GCC unroll 32
    for (int p = 0; p < NP; ++p) {
        zp[p] = z + zpos[p < np ? p : np - 1];  // past np: repeat a valid pixel, dropped
#pragma GCC unroll 4
        for (int v = 0; v < OV; ++v) acc[p][v] = first || p >= np ? V::zero() : V::load(ot + p * ldo + v * V::W);
    }
    for (index_t k = 0; k < K; ++k) {
        typename V::R wv[OV];
#pragma GCC unroll 4
        for (int v = 0; v < OV; ++v) wv[v] = V::load(wT + k * ldw + v * V::W);
        const index_t o = koff[k];
#pragma GCC unroll 32
        for (int p = 0; p < NP; ++p) {
            const typename V::R b = V::set1(zp[p][o]);
#pragma GCC unroll 4
            for (int v = 0; v < OV; ++v) acc[p][v] = V::fma(b, wv[v], acc[p][v]);
        }
    }
#pragma GCC unroll 32
    for (int p = 0; p < NP; ++p) {
        if (p >= np) break;
#pragma GCC unroll 4
        for (int v = 0; v < OV; ++v) V::store(ot + p * ldo + v * V::W, acc[p][v]);
    }
}

// out (P rows of ldo) (+)= the products of cv_tile over pixels [0, P) and vectors [0, Wd)
// (Wd a multiple of W), reading rows [k0, k0 + K) of the weights wp stored in panels of
// Kp rows (panel_index): pairs of vectors, then single ones.
inline void cv_sweep(const float* z, const index_t* zpos, index_t P, const float* wp, index_t Kp, index_t k0,
                     const index_t* koff, index_t K, float* out, index_t ldo, index_t Wd, bool first) {
    index_t o0 = 0;
    for (; o0 + 2 * V::W <= Wd; o0 += 2 * V::W)
        for (index_t p0 = 0; p0 < P; p0 += kCvNP[2])
            cv_tile<kCvNP[2], 2>(z, zpos + p0, int(std::min<index_t>(kCvNP[2], P - p0)), wp + o0 * Kp + k0 * 2 * V::W,
                                 2 * V::W, koff, K, out + p0 * ldo + o0, ldo, first);
    for (; o0 < Wd; o0 += V::W)
        for (index_t p0 = 0; p0 < P; p0 += kCvNP[1])
            cv_tile<kCvNP[1], 1>(z, zpos + p0, int(std::min<index_t>(kCvNP[1], P - p0)), wp + o0 * Kp + k0 * V::W,
                                 V::W, koff, K, out + p0 * ldo + o0, ldo, first);
}

struct ChanKernel {
    const Kernel& kp;  // taps (koff), padded geometry, fill()
    index_t O, Op, P;
    std::vector<index_t> zpos;  // output pixel p's offset in z
    std::vector<float> wT;      // (K, Op) in panel_index order, channels past O zero

    ChanKernel(const Kernel& k, index_t o) : kp(k), O(o), Op((o + V::W - 1) / V::W * V::W), P(k.OR * k.OS) {
        zpos.resize(std::size_t(P));
        for (index_t r = 0; r < kp.OR; ++r)
            for (index_t s = 0; s < kp.OS; ++s) zpos[std::size_t(r * kp.OS + s)] = r * kp.Wz + s;
        wT.assign(std::size_t(kp.K * Op), 0.0f);
    }
    template <typename F>  // wk(o, k): the weight of input tap k for output channel o
    void pack(F&& wk) {
        for (index_t k = 0; k < kp.K; ++k)
            for (index_t o = 0; o < O; ++o) wT[std::size_t(panel_index(k, o, kp.K, Op, V::W))] = wk(o, k);
    }

    // one sample: z (padded) -> out (O, P) + bias, ot (P, Op) its channel-last scratch
    void compute(const float* z, float* out, const float* bias, float* ot) const {
        const index_t K = kp.K, kc = Kernel::kKC;
        for (index_t k0 = 0; k0 < K; k0 += kc) {
            const index_t kn = std::min(kc, K - k0);
            cv_sweep(z, zpos.data(), P, wT.data(), K, k0, kp.koff.data() + k0, kn, ot, Op, Op, k0 == 0);
        }
        // ot (P, Op) -> out (O, P), W x W blocks, + bias
        const index_t pf = P / V::W * V::W, of = O / V::W * V::W;
        for (index_t p0 = 0; p0 < pf; p0 += V::W)
            for (index_t o0 = 0; o0 < of; o0 += V::W) V::transpose(ot + p0 * Op + o0, Op, out + o0 * P + p0, P);
        for (index_t o = 0; o < of; ++o)
            for (index_t p = pf; p < P; ++p) out[o * P + p] = ot[p * Op + o];
        for (index_t o = of; o < O; ++o)
            for (index_t p = 0; p < P; ++p) out[o * P + p] = ot[p * Op + o];
        if (bias)
            for (index_t o = 0; o < O; ++o) {
                const float b = bias[o];
                float* q = out + o * P;
                for (index_t p = 0; p < P; ++p) q[p] += b;
            }
    }

    void run(const float* src, index_t src_ns, index_t Hs, index_t Ws, index_t top, index_t left, float* out,
             index_t out_ns, const float* bias, index_t N) const {
        const bool par = max_threads() > 1 && !in_parallel() && N > 1 && double(N) * O * P * kp.K >= 262144.0;
#pragma omp parallel for schedule(dynamic, 1) if (par)
        for (index_t n = 0; n < N; ++n) {
            float* z = scratch<float>(0, std::size_t(kp.zsize()));
            float* ot = scratch<float>(1, std::size_t(P * Op));
            kp.fill(src + n * src_ns, Hs, Ws, top, left, z);
            compute(z, out + n * out_ns, bias, ot);
        }
    }
};

// Whether the channel-vector form fills clearly more lanes than the row tiles.
bool prefer_channels(index_t out_ch, index_t out_cols) {
    const double rows = double(out_cols) / double(V::W * ((out_cols + V::W - 1) / V::W));
    const double chans = double(out_ch) / double(V::W * ((out_ch + V::W - 1) / V::W));
    return out_ch >= V::W && chans >= rows + 0.2;
}

// ------------------------------------------------------------ weight gradient
//   gwT[k, o] = sum_n sum_q z_n[koff[k] + pos(q)] * gy_n[o, q]
// vectorised along output channels: grad_output is transposed per sample to
// (q, Op) rows (zero-padded to a multiple of W channels), so one pixel's gradient
// for up to 4W channels is 1-4 vector loads, and the input taps are broadcast
// straight from the padded image z: no column matrix, no BLAS packing (which cost
// as much as the GEMM itself on these thin products). A tile keeps KT taps x OV
// vectors of partial sums over a block of rows; they accumulate in a (K, Op) buffer.
template <int OV, int KT>
void wg_tile(const float* z, const index_t* ko, int kt, index_t Wz, const float* gyT, index_t Op, index_t OW,
             index_t r0, index_t r1, float* acc_out) {
    typename V::R acc[KT][OV];
#pragma GCC unroll 24
    for (int t = 0; t < KT; ++t)
#pragma GCC unroll 4
        for (int v = 0; v < OV; ++v) acc[t][v] = t < kt ? V::load(acc_out + t * Op + V::W * v) : V::zero();
    const float* zb[KT];
#pragma GCC unroll 24
    for (int t = 0; t < KT; ++t) zb[t] = z + ko[t < kt ? t : kt - 1];  // past kt: repeat a valid tap, dropped
    for (index_t r = r0; r < r1; ++r) {
        const float* g = gyT + r * OW * Op;
        const index_t zo = r * Wz;
        for (index_t s = 0; s < OW; ++s) {
            typename V::R gv[OV];
#pragma GCC unroll 4
            for (int v = 0; v < OV; ++v) gv[v] = V::load(g + s * Op + V::W * v);
#pragma GCC unroll 24
            for (int t = 0; t < KT; ++t) {
                const typename V::R b = V::set1(zb[t][zo + s]);
#pragma GCC unroll 4
                for (int v = 0; v < OV; ++v) acc[t][v] = V::fma(b, gv[v], acc[t][v]);
            }
        }
    }
#pragma GCC unroll 24
    for (int t = 0; t < KT; ++t) {
        if (t >= kt) break;
#pragma GCC unroll 4
        for (int v = 0; v < OV; ++v) V::store(acc_out + t * Op + V::W * v, acc[t][v]);
    }
}

template <int OV, int KT>
void wg_tiles(const float* z, const index_t* koff, index_t Wz, const float* gyT, index_t Op, index_t o0,
              index_t OW, index_t r0, index_t r1, float* acc, index_t k_lo, index_t k_hi) {
    for (index_t k0 = k_lo; k0 < k_hi; k0 += KT) {
        const int kt = int(std::min<index_t>(KT, k_hi - k0));
        wg_tile<OV, KT>(z, koff + k0, kt, Wz, gyT + o0, Op, OW, r0, r1, acc + k0 * Op + o0);
    }
}

struct WeightGrad {  // one group's weight gradient over all samples
    const Kernel& kp;  // taps (koff), padded geometry, fill()
    index_t Og, Op, OH, OW, L;
    index_t rows;  // output rows per block: their transposed gradient (rows*OW*Op floats) stays in L1/L2

    WeightGrad(const Kernel& k, index_t og, index_t oh, index_t ow)
        : kp(k), Og(og), Op((og + V::W - 1) / V::W * V::W), OH(oh), OW(ow), L(oh * ow) {
        rows = std::max<index_t>(1, std::min<index_t>(OH, 8192 / std::max<index_t>(OW * std::min<index_t>(Op, 64), 1)));
    }

    // gy (Og, L) -> gyT (L, Op), channels past Og zero; W x W blocks in registers
    // (the scalar loop, strided stores, was 12% of the weight gradient)
    void transpose(const float* gy, float* gyT) const {
        const index_t of = Og / V::W * V::W, qf = L / V::W * V::W;
        for (index_t o0 = 0; o0 < of; o0 += V::W)
            for (index_t q0 = 0; q0 < qf; q0 += V::W) V::transpose(gy + o0 * L + q0, L, gyT + q0 * Op + o0, Op);
        for (index_t q = qf; q < L; ++q)
            for (index_t o = 0; o < of; ++o) gyT[q * Op + o] = gy[o * L + q];
        for (index_t q = 0; q < L; ++q)
            for (index_t o = of; o < Op; ++o) gyT[q * Op + o] = o < Og ? gy[o * L + q] : 0.0f;
    }

    // acc (K, Op) += this sample's contribution, taps [k_lo, k_hi)
    void sample(const float* z, const float* gyT, float* acc, index_t k_lo, index_t k_hi) const {
        const index_t Wz = kp.Wz;
        const index_t* koff = kp.koff.data();
        for (index_t r0 = 0; r0 < OH; r0 += rows) {
            const index_t r1 = std::min(OH, r0 + rows);
            for (index_t o0 = 0; o0 < Op; o0 += 4 * V::W) {
                switch (std::min<index_t>(4, (Op - o0) / V::W)) {
                    case 4: wg_tiles<4, kWgKT[4]>(z, koff, Wz, gyT, Op, o0, OW, r0, r1, acc, k_lo, k_hi); break;
                    case 3: wg_tiles<3, kWgKT[3]>(z, koff, Wz, gyT, Op, o0, OW, r0, r1, acc, k_lo, k_hi); break;
                    case 2: wg_tiles<2, kWgKT[2]>(z, koff, Wz, gyT, Op, o0, OW, r0, r1, acc, k_lo, k_hi); break;
                    default: wg_tiles<1, kWgKT[1]>(z, koff, Wz, gyT, Op, o0, OW, r0, r1, acc, k_lo, k_hi); break;
                }
            }
        }
    }
};

// ------------------------------------------------------------ weight gradient, few taps
// With few taps (first layers: 1-3 input channels) the transposed-gradient form
// above does not pay; this one is vectorised along output pixels instead:
//   gw[o, k] = sum_n sum_slots sum_lanes gy_n[o, slot] * z_n[koff[k] + slot]
// A tile keeps OT channels x KT taps of W-lane partial sums over all slots of a
// sample: per slot OT gradient loads, KT image loads, OT*KT FMAs. Lanes past a
// row's end are loaded as zero on both sides, so a NaN or Inf elsewhere in z cannot
// leak in. The W-lane sums accumulate in memory across samples and are reduced once
// at the end.
template <int OT, int KT>
void wgp_tile(const float* z, const float* gy, index_t plane, const Slot* sl, index_t ns, const index_t* ko, int kt,
              float* accv, index_t K) {
    typename V::R acc[OT][KT];
#pragma GCC unroll 8
    for (int o = 0; o < OT; ++o)
#pragma GCC unroll 12
        for (int t = 0; t < KT; ++t) acc[o][t] = V::zero();
    const float* zt[KT];
#pragma GCC unroll 12
    for (int t = 0; t < KT; ++t) zt[t] = z + ko[t < kt ? t : kt - 1];  // past kt: repeat a valid tap, dropped
    for (index_t q = 0; q < ns; ++q) {
        const int n = sl[q].n;
        typename V::R g[OT];
        if (n == V::W) {
#pragma GCC unroll 8
            for (int o = 0; o < OT; ++o) g[o] = V::load(gy + o * plane + sl[q].out);
#pragma GCC unroll 12
            for (int t = 0; t < KT; ++t) {
                const typename V::R xv = V::load(zt[t] + sl[q].in);
#pragma GCC unroll 8
                for (int o = 0; o < OT; ++o) acc[o][t] = V::fma(g[o], xv, acc[o][t]);
            }
        } else {
#pragma GCC unroll 8
            for (int o = 0; o < OT; ++o) g[o] = V::loadn(gy + o * plane + sl[q].out, n);
#pragma GCC unroll 12
            for (int t = 0; t < KT; ++t) {
                const typename V::R xv = V::loadn(zt[t] + sl[q].in, n);
#pragma GCC unroll 8
                for (int o = 0; o < OT; ++o) acc[o][t] = V::fma(g[o], xv, acc[o][t]);
            }
        }
    }
#pragma GCC unroll 8
    for (int o = 0; o < OT; ++o)
#pragma GCC unroll 12
        for (int t = 0; t < KT; ++t) {
            if (t >= kt) break;
            float* d = accv + (o * K + t) * V::W;
            V::store(d, V::add(V::load(d), acc[o][t]));
        }
}

template <int OT, int KT>
void wgp_taps(const float* z, const float* gy, index_t plane, const Slot* sl, index_t ns, const index_t* koff,
              index_t K, float* accv) {
    for (index_t k0 = 0; k0 < K; k0 += KT)
        wgp_tile<OT, KT>(z, gy, plane, sl, ns, koff + k0, int(std::min<index_t>(KT, K - k0)), accv + k0 * V::W, K);
}

// ot channels (1..OT) of one sample: the tile height picked at compile time
template <int OT>
void wgp_channels(const Kernel& kp, const float* z, const float* g, index_t ot, float* a) {
    if (ot == OT) {
        wgp_taps<OT, kWgpKT[OT]>(z, g, kp.plane(), kp.slots.data(), index_t(kp.slots.size()), kp.koff.data(), kp.K, a);
        return;
    }
    if constexpr (OT > 1) wgp_channels<OT - 1>(kp, z, g, ot, a);
}

// accv (Og, K, W) += one sample's partial sums, gy_n (Og, OH*OW)
void wgp_sample(const Kernel& kp, const float* z, const float* gy, index_t Og, float* accv) {
    const index_t K = kp.K, P = kp.plane();
    for (index_t o0 = 0; o0 < Og; o0 += kWgpOT)
        wgp_channels<kWgpOT>(kp, z, gy + o0 * P, std::min<index_t>(kWgpOT, Og - o0), accv + o0 * K * V::W);
}

float lane_sum(const float* v) { return V::reduce(V::load(v)); }

// The sample loop of both weight gradients. Per group: acc (parts x width floats) is
// zeroed, each sample's padded input goes into z and add(z, gy_n, acc_part, split)
// adds its contribution. The samples are split into `parts` fixed chunks
// (sum_chunks: a function of N and the accumulator size only, never of the thread
// count), each summed in sample order into its own part by whichever thread takes
// it; fold(grp, acc, parts) then writes the group's gw adding the parts in chunk
// order. So gw has the same bits for any number of threads. With fewer chunks than
// threads (a batch of 1), add may instead spread one sample's taps over the threads
// (split), which writes disjoint sums.
template <typename Add, typename Fold>
void sum_samples(const float* gy, const float* x, const ConvArgs& a, const Kernel& kp, index_t width, bool threaded,
                 Add&& add, Fold&& fold) {
    const Geom& g = a.g;
    const index_t Cg = g.C / a.groups, Og = a.O / a.groups, L = g.OH * g.OW, N = a.N;
    const index_t xs = g.C * g.H * g.W, gs = a.O * L;
    const index_t parts = sum_chunks(N, width);
    const bool across = threaded && parts >= 2;
    const bool split = threaded && !across;
    std::vector<float> acc(std::size_t(parts) * std::size_t(width));
    for (index_t grp = 0; grp < a.groups; ++grp) {
        std::fill(acc.begin(), acc.end(), 0.0f);
        const float* xg = x + grp * Cg * g.H * g.W;
        const float* gyg = gy + grp * Og * L;
        if (across) {
#pragma omp parallel
            {
                float* z = scratch<float>(0, std::size_t(kp.zsize()));
#pragma omp for schedule(dynamic, 1)
                for (index_t c = 0; c < parts; ++c) {
                    float* mine = acc.data() + std::size_t(c) * std::size_t(width);
                    for (index_t n = chunk_begin(N, parts, c); n < chunk_begin(N, parts, c + 1); ++n) {
                        kp.fill(xg + n * xs, g.H, g.W, g.pt, g.pl, z);
                        add(z, gyg + n * gs, mine, false);
                    }
                }
            }
        } else {
            float* z = scratch<float>(0, std::size_t(kp.zsize()));
            for (index_t c = 0; c < parts; ++c)
                for (index_t n = chunk_begin(N, parts, c); n < chunk_begin(N, parts, c + 1); ++n) {
                    kp.fill(xg + n * xs, g.H, g.W, g.pt, g.pl, z);
                    add(z, gyg + n * gs, acc.data() + std::size_t(c) * std::size_t(width), split);
                }
        }
        fold(grp, acc.data(), parts);
    }
}

// The few-taps weight gradient (wgp_sample per sample), partial sums kept as W lanes.
void weight_grad_pixels(const float* gy, const float* x, float* gw, const ConvArgs& a) {
    const Geom& g = a.g;
    const index_t Cg = g.C / a.groups, Og = a.O / a.groups, K = Cg * g.kh * g.kw, N = a.N;
    const Kernel kp(Cg, Og, g.kh, g.kw, g.dh, g.dw, g.OH, g.OW, false);
    const index_t AV = Og * K * V::W;
    const bool threaded = max_threads() > 1 && !in_parallel() && double(N) * Og * g.OH * g.OW * K >= 262144.0;
    sum_samples(gy, x, a, kp, AV, threaded,
                [&](const float* z, const float* gyn, float* acc, bool) { wgp_sample(kp, z, gyn, Og, acc); },
                [&](index_t grp, const float* acc, index_t parts) {
                    float* gwg = gw + grp * Og * K;
                    for (index_t i = 0; i < Og * K; ++i) {
                        float sum = 0.0f;
                        for (index_t t = 0; t < parts; ++t)
                            sum += lane_sum(acc + std::size_t(t) * std::size_t(AV) + i * V::W);
                        gwg[i] = sum;
                    }
                });
}

// The direct path applies to stride 1 and pays off when rows fill most of a
// W-lane vector; 1x1 stride-1 convs need no im2col anyway (plain GEMM).
// out_ch: output channels per group; fewer than 4 would leave most of a tile idle
// (the data gradient of a 1- or 3-channel input layer).
// zsize: the padded copy of one sample (and group), kept modest per thread.
// lanes: whether output rows must fill more than half of their vectors (the
// forward and data-gradient tiles; on AVX-512, CIFAR's 8-wide maps, half empty,
// ran 20% slower than im2col + GEMM). The weight gradient runs along channels.
bool usable(const Geom& g, index_t out_ch, index_t out_cols, double zsize, bool lanes = true) {
    if (out_ch < 4) return false;
    if (g.sh != 1 || g.sw != 1 || g.is_identity() || out_cols <= 0) return false;
    if (lanes && 2 * out_cols <= V::W * ((out_cols + V::W - 1) / V::W)) return false;
    return zsize < double(1 << 26);
}

constexpr index_t kMinWeightGradTaps = 48;

bool forward_impl(const float* x, const float* w, const float* bias, float* y, const ConvArgs& a) {
    const Geom& g = a.g;
    const index_t Cg = g.C / a.groups, Og = a.O / a.groups, K = Cg * g.kh * g.kw;
    const double zs = double(Cg) * (g.OH + (g.kh - 1) * g.dh) * (g.OW + (g.kw - 1) * g.dw);
    if (g.OH <= 0) return false;
    if (prefer_channels(Og, g.OW) && usable(g, Og, g.OW, zs, false)) {
        const Kernel geo(Cg, Og, g.kh, g.kw, g.dh, g.dw, g.OH, g.OW, false);
        ChanKernel ck(geo, Og);
        for (index_t grp = 0; grp < a.groups; ++grp) {
            const float* wg = w + grp * Og * K;
            ck.pack([&](index_t o, index_t k) { return wg[o * K + k]; });
            ck.run(x + grp * Cg * g.H * g.W, g.C * g.H * g.W, g.H, g.W, g.pt, g.pl, y + grp * Og * g.OH * g.OW,
                   a.O * g.OH * g.OW, bias ? bias + grp * Og : nullptr, a.N);
        }
        return true;
    }
    if (!usable(g, Og, g.OW, zs)) return false;
    Kernel kp(Cg, Og, g.kh, g.kw, g.dh, g.dw, g.OH, g.OW);
    for (index_t grp = 0; grp < a.groups; ++grp) {
        const float* wg = w + grp * Og * K;
        kp.pack([&](index_t o, index_t k) { return wg[o * K + k]; });
        kp.run(x + grp * Cg * g.H * g.W, g.C * g.H * g.W, g.H, g.W, g.pt, g.pl, y + grp * Og * g.OH * g.OW,
               a.O * g.OH * g.OW, bias ? bias + grp * Og : nullptr, a.N);
    }
    return true;
}

bool backward_data_impl(const float* gy, const float* w, float* gx, const ConvArgs& a) {
    const Geom& g = a.g;
    // gx[c, h, w] = sum_{o,i,j} W[o, c, i, j] gy[o, h + pt - i*dh, w + pl - j*dw]; with i' = kh-1-i and
    // gy placed at row (kh-1)*dh - pt of z this is the direct form with a flipped, transposed kernel.
    const index_t Cg = g.C / a.groups, Og = a.O / a.groups, kk = g.kh * g.kw, K = Cg * kk;
    if (g.H <= 0 || !usable(g, Cg, g.W, double(Og) * (g.H + (g.kh - 1) * g.dh) * (g.W + (g.kw - 1) * g.dw)))
        return false;
    Kernel kp(Og, Cg, g.kh, g.kw, g.dh, g.dw, g.H, g.W);
    for (index_t grp = 0; grp < a.groups; ++grp) {
        const float* wg = w + grp * Og * K;
        kp.pack([&](index_t c, index_t k) {
            const index_t o = k / kk, t = k % kk, i = t / g.kw, j = t % g.kw;
            return wg[(o * Cg + c) * kk + (g.kh - 1 - i) * g.kw + (g.kw - 1 - j)];
        });
        kp.run(gy + grp * Og * g.OH * g.OW, a.O * g.OH * g.OW, g.OH, g.OW, (g.kh - 1) * g.dh - g.pt,
               (g.kw - 1) * g.dw - g.pl, gx + grp * Cg * g.H * g.W, g.C * g.H * g.W, nullptr, a.N);
    }
    return true;
}

bool backward_weight_impl(const float* gy, const float* x, float* gw, const ConvArgs& a) {
    const Geom& g = a.g;
    const index_t Cg = g.C / a.groups, Og = a.O / a.groups, K = Cg * g.kh * g.kw;
    const double zs = double(Cg) * (g.OH + (g.kh - 1) * g.dh) * (g.OW + (g.kw - 1) * g.dw);
    // Each transposed gradient value feeds K FMAs: below ~48 taps (first layers:
    // 1-3 input channels) the transpose costs more than BLAS's packing, and the
    // pixel-vectorised form takes over where output rows fill their vectors.
    if (K < kMinWeightGradTaps) {
        if (g.OH <= 0 || !usable(g, 4, g.OW, zs)) return false;  // (any channel count: 4 passes the rule)
        weight_grad_pixels(gy, x, gw, a);
        return true;
    }
    if (g.OH <= 0 || !usable(g, 4, g.OW, zs, false)) return false;
    const Kernel kp(Cg, Og, g.kh, g.kw, g.dh, g.dw, g.OH, g.OW, false);
    const WeightGrad wg(kp, Og, g.OH, g.OW);
    const index_t Op = wg.Op, L = wg.L, KO = K * Op, N = a.N;
    const int nt = max_threads();
    const bool threaded = nt > 1 && !in_parallel() && double(N) * Og * L * K >= 262144.0;
    sum_samples(gy, x, a, kp, KO, threaded,
                [&](const float* z, const float* gyn, float* acc, bool split) {
                    float* gyT = scratch<float>(1, std::size_t(L * Op));
                    wg.transpose(gyn, gyT);
                    if (!split) {
                        wg.sample(z, gyT, acc, 0, K);
                        return;
                    }
                    // one sample, several threads: they take disjoint taps
                    const index_t chunk = (K + nt - 1) / nt;
#pragma omp parallel for schedule(static) num_threads(nt)
                    for (int t = 0; t < nt; ++t) {
                        const index_t lo = t * chunk, hi = std::min(K, lo + chunk);
                        if (lo < hi) wg.sample(z, gyT, acc, lo, hi);
                    }
                },
                [&](index_t grp, const float* acc, index_t parts) {
                    float* gwg = gw + grp * Og * K;
                    for (index_t o = 0; o < Og; ++o)
                        for (index_t k = 0; k < K; ++k) {
                            float sum = 0.0f;
                            for (index_t t = 0; t < parts; ++t)
                                sum += acc[std::size_t(t) * std::size_t(KO) + std::size_t(k * Op + o)];
                            gwg[o * K + k] = sum;
                        }
                });
    return true;
}
